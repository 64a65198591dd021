import type pg from 'pg'
import { hashPassword, verifyPassword } from '../auth/password.js'
import { findUserByEmail, insertUserIfEmailFree, updateCredentials } from '../auth/users.repository.js'
import { insertProductsIfSkuFree } from '../catalog/products.repository.js'
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
  const newProducts = await insertProductsIfSkuFree(
    pool,
    DEMO_PRODUCTS.map((p) => ({ ...p, imageUrl: demoImageUrl(p.sku) })),
  )
  log(`products: ${newProducts} inserted, ${DEMO_PRODUCTS.length - newProducts} already present`)

  await ensureAdmin(pool, config.ADMIN_EMAIL.toLowerCase(), config.ADMIN_PASSWORD, log)
  for (const email of DEMO_CUSTOMER_EMAILS) {
    if (await findUserByEmail(pool, email)) continue
    // Concurrency: the insert does nothing when the email exists, so a second seed racing this one
    // does not fail on the unique email.
    const passwordHash = await hashPassword(DEMO_CUSTOMER_PASSWORD)
    await insertUserIfEmailFree(pool, { email, passwordHash, role: 'customer', isGuest: false })
    log(`user ${email} inserted`)
  }
  return { products: DEMO_PRODUCTS.length, users: DEMO_CUSTOMER_EMAILS.length + 1 }
}

async function ensureAdmin(db: pg.Pool, email: string, password: string, log: (m: string) => void) {
  const existing = await findUserByEmail(db, email)
  if (!existing) {
    const passwordHash = await hashPassword(password)
    await insertUserIfEmailFree(db, { email, passwordHash, role: 'admin', isGuest: false })
    log(`admin ${email} inserted`)
    return
  }
  // Re-hash only when the configured password no longer verifies, so re-seeding is a no-op otherwise.
  if (!(await verifyPassword(password, existing.passwordHash))) {
    await updateCredentials(db, email, { passwordHash: await hashPassword(password) })
    log(`admin ${email}: password updated from ADMIN_PASSWORD`)
  }
  if (existing.role !== 'admin') {
    await updateCredentials(db, email, { role: 'admin' })
    log(`admin ${email}: role set to admin`)
  }
}
