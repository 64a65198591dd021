import type { FastifyInstance } from 'fastify'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { dropDatabase, PGBENCH_SCRIPTS, pgbenchYardsticks } from '../loadtest/pgbench.js'
import { nginxLimitsFromEnv } from '../scripts/stack/nginx.js'
import { buildTestApp, newCustomer } from './support/app.js'
import { startOwnNginx } from './support/own-nginx.js'
import { testStack } from './support/stack-env.js'

// The benchmark's yardsticks are measurements too, and a wrong yardstick makes every ratio wrong: the
// POST ceiling must cost what a purchase costs before it buys (the token, the body, the purchase's nginx
// location and its limit_req zone), and pgbench's purchase scripts must do what a purchase does, all or
// nothing, on the app's own schema.

const stack = testStack()

describe('the POST ceiling (POST /api/ceiling)', () => {
  let app: FastifyInstance
  beforeAll(async () => {
    app = await buildTestApp()
  })
  afterAll(() => app?.close())

  it('when a buyer posts a purchase body with their token, then it is answered 201 and nothing is bought', async () => {
    const buyer = await newCustomer(app)
    const answer = await app.inject({
      method: 'POST',
      url: '/api/ceiling',
      headers: { ...buyer.headers, 'idempotency-key': 'ceiling-1' },
      payload: { quantity: 1 },
    })
    expect(answer.statusCode).toBe(201)
    expect(answer.json()).toEqual({ userId: buyer.id, quantity: 1 })
  })

  it('when the token or the body is missing or wrong, then it is refused as a purchase would be', async () => {
    const buyer = await newCustomer(app)
    const noToken = await app.inject({ method: 'POST', url: '/api/ceiling', payload: { quantity: 1 } })
    expect(noToken.statusCode).toBe(401)
    const badBody = await app.inject({
      method: 'POST',
      url: '/api/ceiling',
      headers: buyer.headers,
      payload: { quantity: 11 },
    })
    expect(badBody.statusCode).toBe(400)
    expect(badBody.json()).toMatchObject({ code: 'VALIDATION_FAILED' })
  })
})

describe.runIf(stack.options !== undefined && stack.workers.length > 0)(
  "the POST ceiling's nginx location (an nginx of its own with the default limits)",
  () => {
    let nginx: Awaited<ReturnType<typeof startOwnNginx>>
    beforeAll(async () => {
      nginx = await startOwnNginx(stack.workers.map((worker) => new URL(worker).host))
    })
    afterAll(() => nginx?.stop())

    it('when ceiling and purchase requests alternate past the burst, then they share one limit_req budget', async () => {
      const { buyBurst, buyRate } = nginxLimitsFromEnv({})
      const perSecond = Number(/^(\d+)r\/s$/.exec(buyRate)?.[1])
      const started = performance.now()
      const statuses: { ceiling: number[]; purchase: number[] } = { ceiling: [], purchase: [] }
      for (let i = 0; i < 2 * buyBurst + 20; i++) {
        const kind = i % 2 === 0 ? 'ceiling' : 'purchase'
        const target = kind === 'ceiling' ? '/api/ceiling' : '/api/sales/1/purchase'
        // No token: the worker refuses with 401, but only what nginx let through reaches it.
        const answer = await fetch(`${nginx.url}${target}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: '{"quantity":1}',
        })
        await answer.arrayBuffer()
        statuses[kind].push(answer.status)
      }
      const seconds = (performance.now() - started) / 1000
      const passed = [...statuses.ceiling, ...statuses.purchase].filter((s) => s !== 429).length
      // One zone: the burst plus what refilled while we sent. Two zones would let about twice the burst by.
      expect(passed).toBeLessThanOrEqual(buyBurst + Math.ceil(seconds * perSecond) + 2)
      expect(statuses.ceiling).toContain(429)
      expect(statuses.purchase).toContain(429)
      expect(statuses.ceiling.filter((s) => s !== 429)).toSatisfy((s: number[]) => s.every((x) => x === 401))
    })
  },
)

/** A pgbench script as plain SQL statements, with its variables written in. */
function statementsOf(script: string, values: Record<string, string | number>): string[] {
  return script
    .split('\n')
    .filter((line) => line.trim() !== '' && !line.startsWith('\\'))
    .map((line) =>
      line.replace(/:([a-z_]+)/g, (whole: string, name: string) =>
        name in values ? String(values[name]) : whole,
      ),
    )
}

describe("pgbench's purchase scripts on the app's schema", () => {
  const database = 'stampede_pgbench_test'
  let admin: pg.Client
  let db: pg.Client
  let sale: number
  let product: number

  beforeAll(async () => {
    admin = new pg.Client({ connectionString: stack.databaseUrl })
    await admin.connect()
    await dropDatabase(admin, database)
    await admin.query(`CREATE DATABASE ${database}`)
    const url = new URL(stack.databaseUrl)
    url.pathname = `/${database}`
    const { migrate } = await import('../src/db/migrate.js')
    const pool = new pg.Pool({ connectionString: url.toString(), max: 1 })
    await migrate(pool)
    await pool.end()
    db = new pg.Client({ connectionString: url.toString() })
    await db.connect()
    product = Number(
      (await db.query(`INSERT INTO products (sku, name, price_cents) VALUES ('t', 't', 1999) RETURNING id`))
        .rows[0].id,
    )
    sale = Number(
      (
        await db.query(
          `INSERT INTO flash_sales (product_id, price_cents, units_total, per_user_limit, starts_at, ends_at)
           VALUES ($1, 999, 2, 2, now() - interval '1 hour', now() + interval '1 hour') RETURNING id`,
          [product],
        )
      ).rows[0].id,
    )
    await db.query(`INSERT INTO flash_sale_stock (sale_id, units_total, available) VALUES ($1, 2, 2)`, [sale])
    await db.query(
      `INSERT INTO users (id, email, password_hash)
       SELECT ('00000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid, 'u' || n || '@t.invalid', 'x'
         FROM generate_series(1, 3) AS n`,
    )
  })
  afterAll(async () => {
    await db?.end()
    if (admin) await dropDatabase(admin, database)
    await admin?.end()
  })

  const counts = async () =>
    (
      await db.query<{ orders: number; items: number; units: number; keys: number; available: number }>(
        `SELECT (SELECT count(*) FROM orders)::int AS orders, (SELECT count(*) FROM order_items)::int AS items,
                (SELECT coalesce(sum(units), 0) FROM sale_user_units)::int AS units,
                (SELECT count(*) FROM idempotency_keys)::int AS keys,
                (SELECT available FROM flash_sale_stock WHERE sale_id = ${sale}) AS available`,
      )
    ).rows[0]!
  const buy = (user: number, key: number, limit = 2) =>
    db.query(
      statementsOf(PGBENCH_SCRIPTS.purchaseOneStatement, {
        u: user,
        k: key,
        client_id: 0,
        sale,
        product,
        price: 999,
        limit,
        answer: `'{"id":"saved"}'`,
      })[0]!,
    )

  it('when the one-statement purchase succeeds, then the order, its item, the units, the key and the stock all change', async () => {
    await buy(1, 1)
    expect(await counts()).toEqual({ orders: 1, items: 1, units: 1, keys: 1, available: 1 })
  })

  it('when it would pass the per-user limit, reuse a key, or take the last unit twice, then nothing of it stays', async () => {
    await expect(buy(1, 1)).rejects.toThrow(/idempotency_keys_pkey/)
    expect(await counts()).toEqual({ orders: 1, items: 1, units: 1, keys: 1, available: 1 })
    const overLimit = await buy(1, 2, 1)
    expect(overLimit.rowCount).toBe(0)
    expect(await counts()).toEqual({ orders: 1, items: 1, units: 1, keys: 1, available: 1 })
    await buy(2, 3)
    await expect(buy(3, 4)).rejects.toThrow(/flash_sale_stock_available_check/)
    expect(await counts()).toEqual({ orders: 2, items: 2, units: 2, keys: 2, available: 0 })
  })

  it("when the atomic path's statements run as one transaction, then they make the same effects", async () => {
    await db.query(
      `UPDATE flash_sale_stock SET available = 1, reserved = 1, sold = 0 WHERE sale_id = ${sale}`,
    )
    for (const statement of statementsOf(PGBENCH_SCRIPTS.purchase, {
      u: 3,
      k: 5,
      client_id: 0,
      sale,
      product,
      price: 999,
      limit: 2,
      answer: `'{"id":"saved"}'`,
    }))
      await db.query(statement)
    expect(await counts()).toEqual({ orders: 3, items: 3, units: 3, keys: 3, available: 0 })
  })
})

describe.runIf(stack.runtime === 'local')('pgbench against the test stack', () => {
  it(
    'when every script runs for a second, then each commits transactions and none fails',
    { timeout: 120_000 },
    async () => {
      const result = await pgbenchYardsticks(stack.databaseUrl, { clients: [2], seconds: 1 })
      for (const script of [result.purchase, result.purchaseOneStatement, result.singleRowUpdate]) {
        expect(script.best.transactions, script.script).toBeGreaterThan(0)
        expect(script.best.failed, script.script).toBe(0)
      }
      expect(result.commit.perSecond).toBeGreaterThan(0)
      const admin = new pg.Client({ connectionString: stack.databaseUrl })
      await admin.connect()
      const left = await admin.query(`SELECT 1 FROM pg_database WHERE datname = 'stampede_pgbench'`)
      await admin.end()
      expect(left.rowCount).toBe(0)
    },
  )
})
