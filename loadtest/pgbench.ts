import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import pg from 'pg'
import { migrate } from '../src/db/migrate.js'
import { run } from '../scripts/stack/process.js'
import { postgresBinDir } from '../scripts/stack/system-packages.js'

// Postgres' own limit for a purchase, measured on the same server in the same run: pgbench, with
// prepared statements, at several client counts (the best one counts), running three scripts against a
// database of its own made by the app's own migrations (the same tables, keys, constraints and
// indexes), which is dropped afterwards:
// - purchase: a flash-sale purchase as separate statements in one transaction (the sale read, the
//   buyer's units raised, the order inserted, the answer saved, then the decrement sent together with
//   COMMIT): the form a purchase took before it became one statement, kept as the yardstick of what
//   round trips cost;
// - purchaseOneStatement: the same effects (the sale's window and per-user limit checked, the buyer's
//   units raised, the order and its item inserted, the idempotent answer saved, the stock decremented)
//   in one statement, all or nothing: the limit a row strategy can approach on this Postgres;
// - singleRowUpdate: one autocommit conditional UPDATE of one row, the yardstick earlier runs used.
// Every client buys from the same sale, so every transaction takes the same hot row, as in a stampede.

export interface PgbenchRun {
  clients: number
  seconds: number
  tps: number
  transactions: number
  /** pgbench's average latency per transaction (ms). */
  latencyMs: number
  /** Transactions that ended in an error (a script that aborts, e.g. a unique violation). */
  failed: number
}

export interface PgbenchScriptResult {
  script: PgbenchScript
  sql: string
  /** The client count with the most transactions per second. */
  best: PgbenchRun
  runs: PgbenchRun[]
}

export type PgbenchScript = 'purchase' | 'purchaseOneStatement' | 'singleRowUpdate'

/**
 * Earlier runs' shape (`clients`, `seconds`, `tps`, `transactions` of the single-row UPDATE) with each
 * script's result beside it.
 */
export interface PgbenchResult extends PgbenchRun {
  singleRowUpdate: PgbenchScriptResult
  purchase: PgbenchScriptResult
  purchaseOneStatement: PgbenchScriptResult
  /** One client committing one-row UPDATEs: what one durable COMMIT costs on this server and disk. */
  commit: { perSecond: number; latencyMs: number }
}

const DATABASE = 'stampede_pgbench'
const USERS = 20_000
const STOCK = 2_000_000_000
// An order as the purchase answer saves it: the size of the body matters, not its values.
const SAVED_ANSWER = JSON.stringify({
  id: '00000000-0000-4000-8000-000000000000',
  number: 'ORD-00000000',
  userId: '00000000-0000-4000-8000-000000000001',
  saleId: 1,
  status: 'reserved',
  totalCents: 999,
  expiresAt: '2026-01-01T00:10:00.000Z',
  createdAt: '2026-01-01T00:00:00.000Z',
  paidAt: null,
  reservationToken: null,
  items: [{ productId: 1, quantity: 1, unitPriceCents: 999 }],
})

// The buyer (a random one of USERS, made with deterministic ids) and a fresh Idempotency-Key.
const BUYER = `\\set u random(1, ${USERS})
\\set k random(1, 2000000000)
`
const buyerId = `('00000000-0000-4000-8000-' || lpad(:u::text, 12, '0'))::uuid`
const key = `'pgbench-' || :client_id || '-' || :k`

/** The scripts, with :sale, :product, :price, :limit and :answer given on pgbench's command line. */
export const PGBENCH_SCRIPTS: Record<PgbenchScript, string> = {
  purchase: `${BUYER}BEGIN;
SELECT s.id, s.product_id, p.name AS product_name, p.image_url AS product_image_url, p.price_cents AS regular_price_cents, s.price_cents, s.units_total, st.available, st.reserved, st.sold, s.per_user_limit, s.registered_only, s.starts_at, s.ends_at, st.version FROM flash_sales s JOIN flash_sale_stock st ON st.sale_id = s.id JOIN products p ON p.id = s.product_id WHERE s.id = :sale;
INSERT INTO sale_user_units (sale_id, user_id, units) SELECT :sale::bigint, u, q FROM unnest(ARRAY[${buyerId}], ARRAY[1]) AS t (u, q) WHERE q <= :limit::int ORDER BY u ON CONFLICT (sale_id, user_id) DO UPDATE SET units = sale_user_units.units + excluded.units WHERE sale_user_units.units + excluded.units <= :limit::int RETURNING user_id;
WITH o AS (INSERT INTO orders (user_id, sale_id, status, total_cents, expires_at, reservation_token) VALUES (${buyerId}, :sale::bigint, 'reserved', :price::int, now() + make_interval(secs => 600), NULL) RETURNING id, expires_at, created_at), i AS (INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents) SELECT o.id, x.* FROM o, unnest(ARRAY[:product::bigint], ARRAY[1], ARRAY[:price::int]) AS x) SELECT id, expires_at, created_at FROM o;
INSERT INTO idempotency_keys (user_id, key, request_method, request_path, request_hash, response_status, response_body) SELECT u, k, m, p, h, s, b::jsonb FROM unnest(ARRAY[${buyerId}], ARRAY[${key}], ARRAY['POST'], ARRAY['/api/sales/' || :sale || '/purchase'], ARRAY[md5(:k::text)], ARRAY[201], ARRAY[:answer::text]) AS r (u, k, m, p, h, s, b) ON CONFLICT (user_id, key) DO NOTHING RETURNING user_id, key;
UPDATE flash_sale_stock SET available = available - 1, reserved = reserved + 1, version = version + 1 WHERE sale_id = :sale;
COMMIT;
`,
  // Every failure aborts the statement, so nothing of it stays: over the limit or outside the window the
  // units CTE returns no row and nothing follows from it; sold out, the CHECK (available >= 0) fails; a
  // key already used violates its primary key (the app would then replay the saved answer). The stock
  // CTE is referenced by nothing, so Postgres runs it after the rest: the hot row is locked last, and
  // held only for the COMMIT.
  purchaseOneStatement: `${BUYER}WITH units AS (INSERT INTO sale_user_units AS su (sale_id, user_id, units) SELECT s.id, ${buyerId}, 1 FROM flash_sales s WHERE s.id = :sale::bigint AND s.starts_at <= now() AND s.ends_at > now() ON CONFLICT (sale_id, user_id) DO UPDATE SET units = su.units + excluded.units WHERE su.units + excluded.units <= :limit::int RETURNING sale_id, user_id), o AS (INSERT INTO orders (id, user_id, sale_id, status, total_cents, expires_at) SELECT gen_random_uuid(), user_id, sale_id, 'reserved', :price::int, now() + interval '600 seconds' FROM units RETURNING id, user_id, expires_at, created_at), i AS (INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents) SELECT id, :product::bigint, 1, :price::int FROM o), k AS (INSERT INTO idempotency_keys (user_id, key, request_method, request_path, request_hash, response_status, response_body) SELECT user_id, ${key}, 'POST', '/api/sales/' || :sale || '/purchase', md5(:k::text), 201, :answer::jsonb FROM o), stock AS (UPDATE flash_sale_stock SET available = available - 1, reserved = reserved + 1, version = version + 1 WHERE sale_id = (SELECT sale_id FROM units)) SELECT id, expires_at, created_at FROM o;
`,
  singleRowUpdate: `UPDATE bench_stock SET available = available - 1 WHERE id = 1 AND available >= 1;
`,
}

export interface PgbenchOptions {
  /** Client counts to try; each is capped to what max_connections leaves free. */
  clients: number[]
  seconds: number
  log?: (message: string) => void
}

/** Runs every script at every client count on the server of `databaseUrl` (as its user) and keeps the best. */
export async function pgbenchYardsticks(
  databaseUrl: string,
  options: PgbenchOptions,
): Promise<PgbenchResult> {
  const binDir = await postgresBinDir()
  if (!binDir) throw new Error('pgbench not found: install postgresql-15 (its client binaries)')
  const log = options.log ?? (() => {})
  const admin = new pg.Client({ connectionString: databaseUrl })
  await admin.connect()
  const url = new URL(databaseUrl)
  url.pathname = `/${DATABASE}`
  const dir = mkdtempSync(path.join(os.tmpdir(), 'stampede-pgbench-'))
  try {
    // Leave room under max_connections for the app's pools, which stay connected during the run.
    const { rows } = await admin.query<{ max: number; used: number }>(
      `SELECT current_setting('max_connections')::int AS max, (SELECT count(*) FROM pg_stat_activity)::int AS used`,
    )
    const room = Math.max(1, rows[0]!.max - rows[0]!.used - 10)
    const clientCounts = [...new Set(options.clients.map((c) => Math.max(1, Math.min(c, room))))]
    await dropDatabase(admin, DATABASE)
    await admin.query(`CREATE DATABASE ${DATABASE}`)
    const fixture = await prepareDatabase(url.toString())
    const variables = Object.entries(fixture).flatMap(([name, value]) => ['-D', `${name}=${value}`])
    const runScript = async (script: PgbenchScript, clients: number): Promise<PgbenchRun> => {
      const file = path.join(dir, `${script}.sql`)
      writeFileSync(file, PGBENCH_SCRIPTS[script])
      const { stdout } = await run(
        path.join(binDir, 'pgbench'),
        [
          ...['-n', '-M', 'prepared', '-c', String(clients), '-j', String(Math.min(clients, 2))],
          ...['-T', String(options.seconds), '-f', file, ...variables],
          ...['-h', url.hostname, '-p', url.port || '5432', '-U', decodeURIComponent(url.username), DATABASE],
        ],
        { env: { ...process.env, PGPASSWORD: decodeURIComponent(url.password) } },
      )
      const number = (pattern: RegExp) => Number(pattern.exec(stdout)?.[1] ?? NaN)
      return {
        clients,
        seconds: options.seconds,
        tps: number(/tps = ([\d.]+)/),
        transactions: number(/number of transactions actually processed: (\d+)/),
        latencyMs: number(/latency average = ([\d.]+) ms/),
        failed: number(/number of failed transactions: (\d+)/) || 0,
      }
    }
    const results = {} as Record<PgbenchScript, PgbenchScriptResult>
    for (const script of ['singleRowUpdate', 'purchase', 'purchaseOneStatement'] as const) {
      const runs: PgbenchRun[] = []
      for (const clients of clientCounts) {
        const result = await runScript(script, clients)
        log(`pgbench ${script}, ${clients} clients: ${Math.round(result.tps)} tps`)
        runs.push(result)
      }
      const best = runs.reduce((a, b) => (b.tps > a.tps ? b : a))
      results[script] = { script, sql: PGBENCH_SCRIPTS[script], best, runs }
    }
    const one = await runScript('singleRowUpdate', 1)
    log(`pgbench commit cost: ${one.latencyMs} ms per one-row commit, one client`)
    return {
      ...results.singleRowUpdate.best,
      ...results,
      commit: { perSecond: one.tps, latencyMs: one.latencyMs },
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
    await dropDatabase(admin, DATABASE).catch((error: Error) =>
      log(`could not drop ${DATABASE}: ${error.message}`),
    )
    await admin.end()
  }
}

/**
 * Drops a database this role made. Not WITH (FORCE): that refuses to end an autovacuum worker, which a
 * role that is not a superuser may not signal, and autovacuum visits a database that has just taken many
 * writes. A plain DROP asks autovacuum to leave and waits for it; while one of our own sessions is still
 * closing ("being accessed by other users") it is tried again, up to 10 s.
 */
export async function dropDatabase(client: pg.Client, name: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await client.query(`DROP DATABASE IF EXISTS ${client.escapeIdentifier(name)}`)
      return
    } catch (error) {
      if (attempt >= 10 || (error as { code?: string }).code !== '55006') throw error
      await new Promise((resolve) => setTimeout(resolve, 1000))
    }
  }
}

/** The app's schema by its own migrations, a product, a sale with STOCK units, USERS buyers; the ids. */
async function prepareDatabase(url: string) {
  const pool = new pg.Pool({ connectionString: url, max: 1 })
  try {
    await migrate(pool)
    const product = await pool.query<{ id: string }>(
      `INSERT INTO products (sku, name, price_cents) VALUES ('pgbench', 'pgbench', 1999) RETURNING id`,
    )
    const productId = Number(product.rows[0]!.id)
    const sale = await pool.query<{ id: string }>(
      `INSERT INTO flash_sales (product_id, price_cents, units_total, per_user_limit, starts_at, ends_at)
       VALUES ($1, 999, $2, 1000000, now() - interval '1 hour', now() + interval '1 day') RETURNING id`,
      [productId, STOCK],
    )
    const saleId = Number(sale.rows[0]!.id)
    await pool.query(`INSERT INTO flash_sale_stock (sale_id, units_total, available) VALUES ($1, $2, $2)`, [
      saleId,
      STOCK,
    ])
    await pool.query(
      `INSERT INTO users (id, email, password_hash)
       SELECT ('00000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid, 'pgbench-' || n || '@stampede.invalid', 'x'
         FROM generate_series(1, $1) AS n`,
      [USERS],
    )
    await pool.query(
      `CREATE TABLE bench_stock (id int PRIMARY KEY, available int NOT NULL CHECK (available >= 0))`,
    )
    await pool.query(`INSERT INTO bench_stock VALUES (1, $1)`, [STOCK])
    await pool.query('VACUUM ANALYZE')
    return { sale: saleId, product: productId, price: 999, limit: 1_000_000, answer: SAVED_ANSWER }
  } finally {
    await pool.end()
  }
}
