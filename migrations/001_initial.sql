-- 001_initial: the first schema. Invariants from BRIEF.md are backed by constraints here, so a bug in the
-- application fails loudly with a constraint violation instead of overselling or duplicating an order.
-- I1 stock conserved: the CHECKs on inventory and flash_sales. I2 exactly once: idempotency_keys' primary key
-- and orders.reservation_token. I5 integrity: price and quantity CHECKs, sale_user_units for per-user limits.

CREATE TABLE users (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  -- Stored lowercased, so the UNIQUE constraint is case-insensitive without citext.
  email text NOT NULL UNIQUE CHECK (email = lower(email)),
  password_hash text, -- scrypt$N$r$p$salt$hash (src/auth/password.ts); null for guests
  role text NOT NULL DEFAULT 'customer' CHECK (role IN ('customer', 'admin')),
  is_guest boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL DEFAULT now(),
  CHECK (is_guest OR password_hash IS NOT NULL)
);

CREATE TABLE products (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  sku text NOT NULL UNIQUE,
  name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  description text NOT NULL DEFAULT '',
  price_cents integer NOT NULL CHECK (price_cents >= 0), -- I5: the only price an order may use
  image_url text,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- One stock row per product. A unit is in exactly one bucket: available, reserved (unpaid order) or sold.
-- A restock raises on_hand and available together; allotting units to a flash sale lowers both.
CREATE TABLE inventory (
  product_id bigint PRIMARY KEY REFERENCES products (id) ON DELETE CASCADE,
  on_hand integer NOT NULL CHECK (on_hand >= 0),
  available integer NOT NULL CHECK (available >= 0), -- I1: no oversell, whatever the stock strategy
  reserved integer NOT NULL DEFAULT 0 CHECK (reserved >= 0),
  sold integer NOT NULL DEFAULT 0 CHECK (sold >= 0),
  version bigint NOT NULL DEFAULT 0, -- bumped by every stock write; the optimistic strategy compares it
  CONSTRAINT inventory_stock_conserved CHECK (available + reserved + sold = on_hand) -- I1: stock conserved
);

-- A sale owns the units allotted to it from the product's inventory, in its own stock row, so the hot
-- flash-sale row never contends with cart checkouts of the same product.
CREATE TABLE flash_sales (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  product_id bigint NOT NULL REFERENCES products (id),
  price_cents integer NOT NULL CHECK (price_cents >= 0),
  units_total integer NOT NULL CHECK (units_total > 0),
  available integer NOT NULL CHECK (available >= 0), -- I1
  reserved integer NOT NULL DEFAULT 0 CHECK (reserved >= 0),
  sold integer NOT NULL DEFAULT 0 CHECK (sold >= 0),
  per_user_limit integer NOT NULL DEFAULT 1 CHECK (per_user_limit > 0),
  starts_at timestamptz NOT NULL,
  ends_at timestamptz NOT NULL,
  version bigint NOT NULL DEFAULT 0,
  created_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT flash_sales_stock_conserved CHECK (available + reserved + sold = units_total), -- I1
  CHECK (ends_at > starts_at)
);
CREATE INDEX flash_sales_product_id_idx ON flash_sales (product_id);

-- I5 per-user limit, held by the database: the purchase path upserts with
-- ON CONFLICT DO UPDATE SET units = units + excluded.units WHERE units + excluded.units <= per_user_limit,
-- and zero rows back means the limit is reached, however many requests the user sends at once.
CREATE TABLE sale_user_units (
  sale_id bigint NOT NULL REFERENCES flash_sales (id) ON DELETE CASCADE,
  user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  units integer NOT NULL CHECK (units >= 0), -- released units are given back, never below zero
  PRIMARY KEY (sale_id, user_id)
);

-- The cart's version backs its ETag: writes carry If-Match and update WHERE version = the one they read.
CREATE TABLE carts (
  user_id uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
  version bigint NOT NULL DEFAULT 0,
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE cart_items (
  user_id uuid NOT NULL REFERENCES carts (user_id) ON DELETE CASCADE,
  product_id bigint NOT NULL REFERENCES products (id) ON DELETE CASCADE,
  quantity integer NOT NULL CHECK (quantity BETWEEN 1 AND 100),
  PRIMARY KEY (user_id, product_id)
);

-- An order holds stock while 'reserved' (until expires_at), keeps it when 'paid', and gives it back
-- exactly once when 'cancelled' or 'expired' (I4: the transition is a conditional UPDATE on status).
CREATE TABLE orders (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id uuid NOT NULL REFERENCES users (id),
  sale_id bigint REFERENCES flash_sales (id), -- null for cart checkouts
  status text NOT NULL DEFAULT 'reserved' CHECK (status IN ('reserved', 'paid', 'cancelled', 'expired')),
  total_cents integer NOT NULL CHECK (total_cents >= 0),
  expires_at timestamptz NOT NULL,
  reservation_token text UNIQUE, -- the Redis gate's token: one order per admitted reservation (I2, I3)
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  paid_at timestamptz,
  cancelled_at timestamptz,
  CHECK (status <> 'paid' OR paid_at IS NOT NULL)
);
-- The sweeper's scan: only reserved orders, oldest expiry first; stays small because paid orders leave it.
CREATE INDEX orders_reserved_expires_at_idx ON orders (expires_at) WHERE status = 'reserved';
CREATE INDEX orders_user_id_created_at_idx ON orders (user_id, created_at DESC);
CREATE INDEX orders_sale_id_idx ON orders (sale_id) WHERE sale_id IS NOT NULL; -- the sale audit

CREATE TABLE order_items (
  order_id uuid NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
  product_id bigint NOT NULL REFERENCES products (id),
  quantity integer NOT NULL CHECK (quantity > 0),
  unit_price_cents integer NOT NULL CHECK (unit_price_cents >= 0), -- copied from products/flash_sales (I5)
  PRIMARY KEY (order_id, product_id)
);

-- I2 backstop: whatever the Redis in-flight lock does, two requests with the same key cannot both insert here.
CREATE TABLE idempotency_keys (
  user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  key text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
  request_method text NOT NULL,
  request_path text NOT NULL,
  request_hash text NOT NULL, -- the same key with a different body is a client error, not a replay
  response_status integer, -- null while the first request is still running
  response_body jsonb,
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL DEFAULT now() + interval '24 hours',
  PRIMARY KEY (user_id, key)
);
CREATE INDEX idempotency_keys_expires_at_idx ON idempotency_keys (expires_at);
