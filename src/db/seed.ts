import type pg from 'pg'
import { hashPassword, verifyPassword } from '../auth/password.js'
import type { Config } from '../config.js'
import { DEMO_PRODUCTS, demoImageUrl } from './demo-catalogue.js'

export const DEMO_CUSTOMER_EMAILS = ['alice@stampede.local', 'bob@stampede.local', 'carol@stampede.local']
export const DEMO_CUSTOMER_PASSWORD = 'stampede-demo'

/**
 * Makes sure the demo catalogue and demo users exist. Safe to run on every deploy: it only inserts what is
 * missing and never touches an existing product, its price or its stock (an admin may have changed them).
 * The one exception is the admin, whose password follows config.ADMIN_PASSWORD.
 * Returns how many demo products and users exist after seeding (the same on every run).
 */
export async function seed(
  pool: pg.Pool,
  config: Config,
  opts: { log?: (message: string) => void } = {},
): Promise<{ products: number; users: number }> {
  const log = opts.log ?? (() => {})
  const newProducts = await insertMissingProducts(pool)
  log(`products: ${newProducts} inserted, ${DEMO_PRODUCTS.length - newProducts} already present`)

  await ensureAdmin(pool, config.ADMIN_EMAIL.toLowerCase(), config.ADMIN_PASSWORD, log)
  for (const email of DEMO_CUSTOMER_EMAILS) {
    const { rowCount } = await pool.query('SELECT 1 FROM users WHERE email = $1', [email])
    if (rowCount) continue
    // Concurrency: ON CONFLICT DO NOTHING, so a second seed racing this one does not fail on the unique email.
    await pool.query(
      `INSERT INTO users (email, password_hash, role) VALUES ($1, $2, 'customer') ON CONFLICT (email) DO NOTHING`,
      [email, await hashPassword(DEMO_CUSTOMER_PASSWORD)],
    )
    log(`user ${email} inserted`)
  }
  return { products: DEMO_PRODUCTS.length, users: DEMO_CUSTOMER_EMAILS.length + 1 }
}

/** One statement, so a product never exists without its inventory row; existing skus are left alone. */
async function insertMissingProducts(db: pg.Pool): Promise<number> {
  const { rowCount } = await db.query(
    `WITH demo AS (
       SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[], $6::int[])
         AS d (sku, name, description, price_cents, image_url, stock)
     ), inserted AS (
       INSERT INTO products (sku, name, description, price_cents, image_url)
       SELECT sku, name, description, price_cents, image_url FROM demo
       ON CONFLICT (sku) DO NOTHING
       RETURNING id, sku
     )
     INSERT INTO inventory (product_id, on_hand, available, reserved, sold)
     SELECT inserted.id, demo.stock, demo.stock, 0, 0 FROM inserted JOIN demo USING (sku)`,
    [
      DEMO_PRODUCTS.map((p) => p.sku),
      DEMO_PRODUCTS.map((p) => p.name),
      DEMO_PRODUCTS.map((p) => p.description),
      DEMO_PRODUCTS.map((p) => p.priceCents),
      DEMO_PRODUCTS.map((p) => demoImageUrl(p.sku)),
      DEMO_PRODUCTS.map((p) => p.stock),
    ],
  )
  return rowCount ?? 0
}

async function ensureAdmin(db: pg.Pool, email: string, password: string, log: (m: string) => void) {
  const { rows } = await db.query<{ password_hash: string | null; role: string }>(
    'SELECT password_hash, role FROM users WHERE email = $1',
    [email],
  )
  const existing = rows[0]
  if (!existing) {
    await db.query(
      `INSERT INTO users (email, password_hash, role) VALUES ($1, $2, 'admin') ON CONFLICT (email) DO NOTHING`,
      [email, await hashPassword(password)],
    )
    log(`admin ${email} inserted`)
    return
  }
  // Re-hash only when the configured password no longer verifies, so re-seeding is a no-op otherwise.
  if (!(await verifyPassword(password, existing.password_hash))) {
    await db.query('UPDATE users SET password_hash = $2, is_guest = false WHERE email = $1', [
      email,
      await hashPassword(password),
    ])
    log(`admin ${email}: password updated from ADMIN_PASSWORD`)
  }
  if (existing.role !== 'admin') {
    await db.query(`UPDATE users SET role = 'admin' WHERE email = $1`, [email])
    log(`admin ${email}: role set to admin`)
  }
}
