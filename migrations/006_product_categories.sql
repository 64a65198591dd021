-- 006_product_categories: the shop's search and category filters. A category is a row of its own (slug
-- for URLs, name for people); a product belongs to at most one. The demo catalogue's SKUs start with a
-- category prefix, so existing demo products are filed by it.
CREATE TABLE categories (
  slug text PRIMARY KEY CHECK (slug ~ '^[a-z0-9-]{1,40}$'),
  name text NOT NULL
);

INSERT INTO categories (slug, name) VALUES
  ('sneakers', 'Sneakers'),
  ('headphones', 'Headphones'),
  ('keyboards', 'Keyboards'),
  ('coffee', 'Coffee'),
  ('backpacks', 'Backpacks'),
  ('watches', 'Watches');

ALTER TABLE products ADD COLUMN category_slug text REFERENCES categories (slug);

UPDATE products SET category_slug = CASE split_part(sku, '-', 1)
    WHEN 'snk' THEN 'sneakers'
    WHEN 'aud' THEN 'headphones'
    WHEN 'kbd' THEN 'keyboards'
    WHEN 'cof' THEN 'coffee'
    WHEN 'bag' THEN 'backpacks'
    WHEN 'wch' THEN 'watches'
  END
 WHERE category_slug IS NULL;

CREATE INDEX products_category_idx ON products (category_slug, id);

-- Free-text search is `name || ' ' || description ILIKE '%words%'`. A B-tree cannot serve a pattern with a
-- leading wildcard; a trigram GIN index can, so the search stays an index scan when the catalogue grows
-- past the demo's few dozen rows (on those the planner rightly reads the whole table). pg_trgm ships with
-- PostgreSQL and is a trusted extension: the database owner may create it without being a superuser.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX products_search_trgm_idx ON products USING gin ((name || ' ' || description) gin_trgm_ops);
