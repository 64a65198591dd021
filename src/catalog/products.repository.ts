import type { Queryable } from '../db/transaction.js'
import { unnestColumns } from '../db/unnest.js'

export interface Product {
  id: number
  sku: string
  name: string
  description: string
  priceCents: number
  imageUrl: string | null
  /** The category's slug, or null for a product filed under none. */
  category: string | null
  /** Units a buyer could still take. Display only when read from the replica: it may lag. */
  available: number
  updatedAt: string
}

interface ProductRow {
  id: number
  sku: string
  name: string
  description: string
  price_cents: number
  image_url: string | null
  category_slug: string | null
  available: number
  updated_at: Date
}

const toProduct = (row: ProductRow): Product => ({
  id: row.id,
  sku: row.sku,
  name: row.name,
  description: row.description,
  priceCents: row.price_cents,
  imageUrl: row.image_url,
  category: row.category_slug,
  available: row.available,
  updatedAt: row.updated_at.toISOString(),
})

const SELECT_PRODUCT = `
  SELECT p.id, p.sku, p.name, p.description, p.price_cents, p.image_url, p.category_slug, p.updated_at, i.available
    FROM products p JOIN inventory i ON i.product_id = p.id`

export async function findProduct(db: Queryable, id: number): Promise<Product | undefined> {
  const { rows } = await db.query<ProductRow>(`${SELECT_PRODUCT} WHERE p.id = $1`, [id])
  return rows[0] && toProduct(rows[0])
}

/** Keyset pagination: the page after `afterId`, in id order; stable while products are added. */
export async function listProductsAfter(db: Queryable, afterId: number, limit: number): Promise<Product[]> {
  const { rows } = await db.query<ProductRow>(`${SELECT_PRODUCT} WHERE p.id > $1 ORDER BY p.id LIMIT $2`, [
    afterId,
    limit,
  ])
  return rows.map(toProduct)
}

export interface ProductFilter {
  /** Words to find in the name or description (matched as one phrase, case-insensitively). */
  q?: string
  category?: string
}

/** Escapes LIKE's wildcards, so a shopper's `%` or `_` matches itself. */
const likePattern = (text: string) => `%${text.replace(/[\\%_]/g, (c) => `\\${c}`)}%`

/**
 * The page of products matching the filter after `afterId`, in id order. The phrase is matched with
 * ILIKE on name and description, served by the trigram index of migration 006.
 */
export async function searchProductsAfter(
  db: Queryable,
  filter: ProductFilter,
  afterId: number,
  limit: number,
): Promise<Product[]> {
  const { rows } = await db.query<ProductRow>(
    `${SELECT_PRODUCT}
      WHERE p.id > $1
        AND ($3::text IS NULL OR p.category_slug = $3)
        AND ($4::text IS NULL OR (p.name || ' ' || p.description) ILIKE $4)
      ORDER BY p.id LIMIT $2`,
    [afterId, limit, filter.category ?? null, filter.q ? likePattern(filter.q) : null],
  )
  return rows.map(toProduct)
}

export interface Category {
  slug: string
  name: string
  productCount: number
}

/** Every category with how many products it holds, in name order. */
export async function listCategories(db: Queryable): Promise<Category[]> {
  const { rows } = await db.query<Category>(
    `SELECT c.slug, c.name, count(p.id)::int AS "productCount"
       FROM categories c LEFT JOIN products p ON p.category_slug = c.slug
      GROUP BY c.slug, c.name ORDER BY c.name`,
  )
  return rows
}

export interface NewProduct {
  sku: string
  name: string
  description: string
  priceCents: number
  imageUrl: string | null
  stock: number
  /** A category slug that exists (categories table); the admin API files new products under none. */
  category?: string | null
}

/** Inserts the product and its stock row; `undefined` when the SKU exists already. */
export async function insertProduct(tx: Queryable, product: NewProduct): Promise<number | undefined> {
  const { rows } = await tx.query<{ id: number }>(
    `INSERT INTO products (sku, name, description, price_cents, image_url) VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (sku) DO NOTHING RETURNING id`,
    [product.sku, product.name, product.description, product.priceCents, product.imageUrl],
  )
  const id = rows[0]?.id
  if (id === undefined) return undefined
  await tx.query('INSERT INTO inventory (product_id, on_hand, available) VALUES ($1, $2, $2)', [
    id,
    product.stock,
  ])
  return id
}

/**
 * Inserts the products whose SKU is new, each with its stock row, in one statement (so a product never
 * exists without its inventory); existing SKUs are left alone. Returns how many it inserted.
 */
export async function insertProductsIfSkuFree(db: Queryable, products: NewProduct[]): Promise<number> {
  if (products.length === 0) return 0
  const { rowCount } = await db.query(
    `WITH new AS (
       SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[], $6::int[], $7::text[])
         AS d (sku, name, description, price_cents, image_url, stock, category_slug)
     ), inserted AS (
       INSERT INTO products (sku, name, description, price_cents, image_url, category_slug)
       SELECT sku, name, description, price_cents, image_url, category_slug FROM new
       ON CONFLICT (sku) DO NOTHING
       RETURNING id, sku
     )
     INSERT INTO inventory (product_id, on_hand, available, reserved, sold)
     SELECT inserted.id, new.stock, new.stock, 0, 0 FROM inserted JOIN new USING (sku)`,
    unnestColumns(products, (p) => [
      p.sku,
      p.name,
      p.description,
      p.priceCents,
      p.imageUrl,
      p.stock,
      p.category ?? null,
    ]),
  )
  return rowCount ?? 0
}

export interface ProductChanges {
  name?: string
  description?: string
  imageUrl?: string | null
  priceCents?: number
}

/** Applies only the given fields; `false` when no such product exists. */
export async function updateProduct(db: Queryable, id: number, changes: ProductChanges): Promise<boolean> {
  const { rowCount } = await db.query(
    `UPDATE products SET
        name = COALESCE($2, name),
        description = COALESCE($3, description),
        image_url = CASE WHEN $4::boolean THEN $5 ELSE image_url END,
        price_cents = COALESCE($6, price_cents),
        updated_at = now()
      WHERE id = $1`,
    [
      id,
      changes.name ?? null,
      changes.description ?? null,
      changes.imageUrl !== undefined,
      changes.imageUrl ?? null,
      changes.priceCents ?? null,
    ],
  )
  return rowCount === 1
}

/** The most units one product's stock row holds: its counters are Postgres integers (int4). */
export const MAX_UNITS_PER_PRODUCT = 2_147_483_647

// Concurrency: a restock is one relative UPDATE (on_hand + n, available + n), never read-modify-write,
// so it cannot lose a concurrent checkout's decrement; the version bump makes optimistic buyers re-read.
// The bound is in the same statement, summed as bigint: each restock is small, but many of them could
// carry on_hand past the column's range, and the overflow would fail the UPDATE with a 500.
export async function restockWithinLimit(
  db: Queryable,
  productId: number,
  quantity: number,
): Promise<'restocked' | 'over limit' | 'not found'> {
  const { rowCount } = await db.query(
    `UPDATE inventory SET on_hand = on_hand + $2, available = available + $2, version = version + 1
      WHERE product_id = $1 AND on_hand::bigint + $2 <= $3`,
    [productId, quantity, MAX_UNITS_PER_PRODUCT],
  )
  if (rowCount === 1) return 'restocked'
  const { rowCount: exists } = await db.query('SELECT 1 FROM inventory WHERE product_id = $1', [productId])
  return exists === 1 ? 'over limit' : 'not found'
}
