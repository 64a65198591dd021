import { randomBytes } from 'node:crypto'
import { cp, mkdtemp, readdir, rm, writeFile, appendFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { afterAll, describe, expect, it } from 'vitest'
import { verifyPassword } from '../auth/password.js'
import { loadConfig } from '../config.js'
import { DEMO_PRODUCTS } from '../demo/demo-catalogue.js'
import { migrate } from './migrate.js'
import { DEMO_CUSTOMER_EMAILS, DEMO_CUSTOMER_PASSWORD, seed } from '../demo/seed.js'

// Runs against a real Postgres: DATABASE_URL from the test setup, or the local stack's default.
// Each test creates its own database, so tests never see each other's schema or rows.
const baseUrl = process.env.DATABASE_URL ?? loadConfig().DATABASE_URL
const MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations/', import.meta.url))
const serverPool = new pg.Pool({ connectionString: baseUrl, max: 2 })
const pools: pg.Pool[] = []
const databases: string[] = []
const tempDirs: string[] = []

async function freshDatabase(): Promise<{ pool: pg.Pool; connect: () => pg.Pool }> {
  const name = `stampede_mig_${randomBytes(6).toString('hex')}`
  await serverPool.query(`CREATE DATABASE ${name}`)
  databases.push(name)
  const url = new URL(baseUrl)
  url.pathname = `/${name}`
  const connect = () => {
    const pool = new pg.Pool({ connectionString: url.toString(), max: 4 })
    pools.push(pool)
    return pool
  }
  return { pool: connect(), connect }
}

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'stampede-migrations-'))
  tempDirs.push(dir)
  return dir
}

async function migratedDatabase(): Promise<pg.Pool> {
  const { pool } = await freshDatabase()
  await migrate(pool)
  return pool
}

/** Columns and constraints of the public schema, to show that a re-run changed nothing. */
async function schemaFingerprint(db: pg.Pool): Promise<unknown[]> {
  const { rows } = await db.query(
    `SELECT table_name, column_name, data_type, is_nullable, column_default FROM information_schema.columns
      WHERE table_schema = 'public'
     UNION ALL
     SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid), NULL, NULL FROM pg_constraint
      WHERE connamespace = 'public'::regnamespace
     ORDER BY 1, 2`,
  )
  return rows
}

afterAll(async () => {
  await Promise.all(pools.map((pool) => pool.end()))
  // pool.end() resolves before the server has closed every session (later still when Postgres runs in a
  // container); a forced drop then terminates a session whose client still listens, an uncaught error.
  for (let attempt = 0; attempt < 50; attempt++) {
    const { rows } = await serverPool.query<{ sessions: number }>(
      'SELECT count(*)::int AS sessions FROM pg_stat_activity WHERE datname = ANY($1)',
      [databases],
    )
    if (rows[0]!.sessions === 0) break
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  for (const name of databases) await serverPool.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
  await serverPool.end()
  await Promise.all(tempDirs.map((dir) => rm(dir, { recursive: true, force: true })))
})

describe('migrate', { timeout: 30_000 }, () => {
  it('when the database is empty, then every migration applies and the tables exist', async () => {
    const { pool } = await freshDatabase()
    const files = (await readdir(MIGRATIONS_DIR)).filter((name) => name.endsWith('.sql')).sort()

    const { applied } = await migrate(pool)

    expect(applied).toEqual(files)
    const { rows } = await pool.query<{ table_name: string }>(
      `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'`,
    )
    expect(rows.map((row) => row.table_name)).toEqual(
      expect.arrayContaining([
        'schema_migrations',
        'users',
        'products',
        'inventory',
        'flash_sales',
        'flash_sale_stock',
        'sale_user_units',
        'carts',
        'cart_items',
        'orders',
        'order_items',
        'idempotency_keys',
      ]),
    )
  })

  it('when migrations are run again, then nothing is applied and nothing changes', async () => {
    const pool = await migratedDatabase()
    const before = await schemaFingerprint(pool)
    const { rows: recordedBefore } = await pool.query('SELECT * FROM schema_migrations ORDER BY name')

    const { applied } = await migrate(pool)

    expect(applied).toEqual([])
    expect(await schemaFingerprint(pool)).toEqual(before)
    expect((await pool.query('SELECT * FROM schema_migrations ORDER BY name')).rows).toEqual(recordedBefore)
  })

  it('when an applied migration file was edited, then migrate refuses and names the file', async () => {
    const { pool } = await freshDatabase()
    const dir = await tempDir()
    await cp(MIGRATIONS_DIR, dir, { recursive: true })
    await migrate(pool, { dir })
    await appendFile(path.join(dir, '001_initial.sql'), '\n-- an innocent-looking edit\n')

    await expect(migrate(pool, { dir })).rejects.toThrow(/001_initial\.sql changed after it was applied/)
  })

  it('when two migrators run at once on an empty database, then each file is applied exactly once', async () => {
    const { connect } = await freshDatabase()
    const files = (await readdir(MIGRATIONS_DIR)).filter((name) => name.endsWith('.sql')).sort()

    const results = await Promise.all([migrate(connect()), migrate(connect())])

    expect(results.flatMap((result) => result.applied).sort()).toEqual(files)
    const { rows } = await connect().query<{ name: string }>(
      'SELECT name FROM schema_migrations ORDER BY name',
    )
    expect(rows.map((row) => row.name)).toEqual(files)
  })

  it('when a migration fails half-way, then it rejects naming the file and leaves no partial table', async () => {
    const { pool } = await freshDatabase()
    const dir = await tempDir()
    await writeFile(path.join(dir, '001_ok.sql'), 'CREATE TABLE first_table (id int);')
    await writeFile(
      path.join(dir, '002_broken.sql'),
      'CREATE TABLE half_done (id int);\nINSERT INTO no_such_table VALUES (1);',
    )

    await expect(migrate(pool, { dir })).rejects.toThrow(/002_broken\.sql failed: .*no_such_table/)

    const { rows } = await pool.query(
      `SELECT to_regclass('first_table') AS first, to_regclass('half_done') AS half,
              array(SELECT name FROM schema_migrations ORDER BY name) AS recorded`,
    )
    expect(rows[0]).toEqual({ first: 'first_table', half: null, recorded: ['001_ok.sql'] })
  })
})

describe('schema constraints', { timeout: 30_000 }, () => {
  async function insertProduct(db: pg.Pool): Promise<string> {
    const { rows } = await db.query<{ id: string }>(
      `INSERT INTO products (sku, name, price_cents) VALUES ('sku-1', 'Thing', 1000) RETURNING id`,
    )
    return rows[0]!.id
  }

  it('when inventory is inserted with available below zero, then Postgres rejects it (I1)', async () => {
    const pool = await migratedDatabase()
    const productId = await insertProduct(pool)

    await expect(
      pool.query(
        'INSERT INTO inventory (product_id, on_hand, available, reserved, sold) VALUES ($1, 0, -1, 1, 0)',
        [productId],
      ),
    ).rejects.toMatchObject({ code: '23514', constraint: 'inventory_available_check' })
  })

  it('when a stock write would oversell or lose units, then Postgres rejects it (I1)', async () => {
    const pool = await migratedDatabase()
    const productId = await insertProduct(pool)
    await pool.query(
      'INSERT INTO inventory (product_id, on_hand, available, reserved, sold) VALUES ($1, 10, 3, 2, 5)',
      [productId],
    )

    await expect(
      pool.query('UPDATE inventory SET available = available - 4, sold = sold + 4 WHERE product_id = $1', [
        productId,
      ]),
    ).rejects.toMatchObject({ code: '23514', constraint: 'inventory_available_check' })
    await expect(
      pool.query('UPDATE inventory SET available = available - 1 WHERE product_id = $1', [productId]),
    ).rejects.toMatchObject({ code: '23514', constraint: 'inventory_stock_conserved' })
    const { rows: sales } = await pool.query<{ id: number }>(
      `INSERT INTO flash_sales (product_id, price_cents, units_total, starts_at, ends_at)
       VALUES ($1, 500, 10, now(), now() + interval '1 hour') RETURNING id`,
      [productId],
    )
    await expect(
      pool.query(`INSERT INTO flash_sale_stock (sale_id, units_total, available) VALUES ($1, 10, 11)`, [
        sales[0]!.id,
      ]),
    ).rejects.toMatchObject({ code: '23514', constraint: 'flash_sale_stock_conserved' })
  })

  it('when the same idempotency key is stored twice for one user, then the second insert fails (I2)', async () => {
    const pool = await migratedDatabase()
    const { rows } = await pool.query<{ id: string }>(
      `INSERT INTO users (email, password_hash) VALUES ('dave@example.com', 'x') RETURNING id`,
    )
    const insertKey = () =>
      pool.query(
        `INSERT INTO idempotency_keys (user_id, key, request_method, request_path, request_hash)
         VALUES ($1, 'key-1', 'POST', '/api/checkout', 'hash')`,
        [rows[0]!.id],
      )
    await insertKey()

    await expect(insertKey()).rejects.toMatchObject({ code: '23505', constraint: 'idempotency_keys_pkey' })
  })
})

describe('seed', { timeout: 30_000 }, () => {
  const config = { ...loadConfig(), ADMIN_EMAIL: 'Root@Stampede.local', ADMIN_PASSWORD: 'test-admin-secret' }

  async function counts(db: pg.Pool) {
    const { rows } = await db.query(
      `SELECT (SELECT count(*)::int FROM products) AS products, (SELECT count(*)::int FROM inventory) AS inventory,
              (SELECT count(*)::int FROM users) AS users`,
    )
    return rows[0]
  }

  it('when seeded twice, then the counts are the same and changed stock is not reset', async () => {
    const pool = await migratedDatabase()
    const first = await seed(pool, config)
    const afterFirst = await counts(pool)
    const sku = DEMO_PRODUCTS[0]!.sku
    await pool.query(
      `UPDATE inventory SET available = available - 3, sold = sold + 3
        WHERE product_id = (SELECT id FROM products WHERE sku = $1)`,
      [sku],
    )
    const stockQuery = `SELECT on_hand, available, reserved, sold FROM inventory
                         JOIN products ON products.id = product_id WHERE sku = $1`
    const { rows: stockBefore } = await pool.query(stockQuery, [sku])

    const second = await seed(pool, config)

    expect(second).toEqual(first)
    expect(first).toEqual({ products: DEMO_PRODUCTS.length, users: DEMO_CUSTOMER_EMAILS.length + 1 })
    expect(await counts(pool)).toEqual(afterFirst)
    expect(afterFirst).toEqual({ products: DEMO_PRODUCTS.length, inventory: DEMO_PRODUCTS.length, users: 4 })
    expect((await pool.query(stockQuery, [sku])).rows).toEqual(stockBefore)
    expect(stockBefore[0]).toMatchObject({ sold: 3 })
  })

  it('when seeded, then the admin and the demo customers can log in with their passwords', async () => {
    const pool = await migratedDatabase()
    await seed(pool, config)

    const { rows } = await pool.query<{ email: string; role: string; password_hash: string }>(
      'SELECT email, role, password_hash FROM users ORDER BY email',
    )
    const admin = rows.find((row) => row.email === 'root@stampede.local')
    expect(admin?.role).toBe('admin')
    expect(await verifyPassword('test-admin-secret', admin!.password_hash)).toBe(true)
    for (const email of DEMO_CUSTOMER_EMAILS) {
      const customer = rows.find((row) => row.email === email)
      expect(customer?.role).toBe('customer')
      expect(await verifyPassword(DEMO_CUSTOMER_PASSWORD, customer!.password_hash)).toBe(true)
    }
  })

  it('when ADMIN_PASSWORD changes, then re-seeding updates only the admin password hash', async () => {
    const pool = await migratedDatabase()
    await seed(pool, config)
    const hashOf = async (email: string) =>
      (await pool.query('SELECT password_hash FROM users WHERE email = $1', [email])).rows[0].password_hash
    const aliceBefore = await hashOf('alice@stampede.local')
    const adminBefore = await hashOf('root@stampede.local')

    await seed(pool, config)
    expect(await hashOf('root@stampede.local')).toBe(adminBefore)
    await seed(pool, { ...config, ADMIN_PASSWORD: 'a-new-admin-secret' })

    expect(await verifyPassword('a-new-admin-secret', await hashOf('root@stampede.local'))).toBe(true)
    expect(await hashOf('alice@stampede.local')).toBe(aliceBefore)
  })
})
