import { randomUUID } from 'node:crypto'
import type { Redis } from 'ioredis'
import type pg from 'pg'
import { createTwoLevelCache, type TwoLevelCache } from '../../src/cache/two-level-cache.js'
import { createMetrics } from '../../src/metrics.js'
import { createRedis, duplicateForSubscribing } from '../../src/redis/client.js'
import { labPool, type Lab, type LabContext } from './lab.js'

// Lab 3, cold key: 200 requests at once for a product nobody has asked for yet. The broken variant is the
// textbook cache-aside (GET, on a miss load and SET) with no single flight; the fixed one is the real
// two-level cache, in two instances as two workers would have it. Both use the same counting loader: a
// product query that takes 50 ms, like a query on a busy database.

const REQUESTS = 200
const silent = { warn: () => undefined, info: () => undefined, error: () => undefined }

interface Product {
  id: number
  name: string
}

/** A loader that counts its queries; the SQL carries a tag, so pg_stat_statements can count them too. */
function countingLoader(pool: pg.Pool, productId: number) {
  const counter = { queries: 0 }
  const load = async (): Promise<Product | undefined> => {
    counter.queries++
    const { rows } = await pool.query<Product>(
      `SELECT /* lab cold-key */ id::int AS id, name, pg_sleep(0.05)::text AS slept FROM products WHERE id = $1`,
      [productId],
    )
    return rows[0] ? { id: rows[0].id, name: rows[0].name } : undefined
  }
  return { counter, load }
}

/** The textbook cache-aside: every request that misses loads and stores, all of them at once. */
async function cacheAside(redis: Redis, key: string, load: () => Promise<Product | undefined>) {
  const cached = await redis.get(key)
  if (cached !== null) return JSON.parse(cached) as Product
  const value = await load()
  await redis.set(key, JSON.stringify(value ?? null), 'PX', 5000)
  return value
}

/** Calls of the tagged query pg_stat_statements has seen (null where the extension is not readable). */
async function statementCalls(pool: pg.Pool): Promise<number | null> {
  try {
    const { rows } = await pool.query<{ calls: string | null }>(
      `SELECT sum(calls) AS calls FROM pg_stat_statements WHERE query LIKE '%lab cold-key%'`,
    )
    return Number(rows[0]?.calls ?? 0)
  } catch {
    return null
  }
}

async function workerCache(ctx: LabContext): Promise<{ cache: TwoLevelCache; close(): void }> {
  const redis = createRedis({ ...ctx.target.config, REDIS_URL: ctx.urls.redisUrl })
  redis.on('error', () => undefined)
  await redis.connect()
  const subscriber = duplicateForSubscribing(redis)
  const cache = createTwoLevelCache({
    redis,
    subscriber,
    metrics: createMetrics('lab'),
    log: silent,
    recentWriteMs: 1000,
  })
  await cache.start()
  return {
    cache,
    close: () => {
      cache.close()
      redis.disconnect()
      subscriber.disconnect()
    },
  }
}

export const coldKey: Lab = {
  name: 'cold-key',
  title: '200 requests for a cold key without single flight query 200 times; the two-level cache once',
  async run(ctx) {
    const pool = labPool({ connectionString: ctx.urls.databaseUrl, max: 20 })
    const redis = createRedis({ ...ctx.target.config, REDIS_URL: ctx.urls.redisUrl })
    redis.on('error', () => undefined)
    const caches = [await workerCache(ctx), await workerCache(ctx)]
    try {
      await redis.connect()
      const productId = (
        await pool.query<{ id: number }>('SELECT id::int AS id FROM products ORDER BY id LIMIT 1')
      ).rows[0]!.id
      const line = (what: string, queries: number, statements: number | null, ms: number) =>
        `${what}: ${REQUESTS} concurrent reads of one cold key -> ${queries} database ${queries === 1 ? 'query' : 'queries'}` +
        (statements === null
          ? ''
          : ` (pg_stat_statements: ${statements} ${statements === 1 ? 'call' : 'calls'})`) +
        `, ${ms} ms`

      const naive = countingLoader(pool, productId)
      let calls = await statementCalls(pool)
      let started = Date.now()
      const key = `lab:cold-key:${randomUUID()}`
      await Promise.all(Array.from({ length: REQUESTS }, () => cacheAside(redis, key, naive.load)))
      const naiveMs = Date.now() - started
      const naiveCalls = calls === null ? null : (await statementCalls(pool))! - calls
      await redis.del(key)

      // The real cache: half the requests on each of two "workers".
      const real = countingLoader(pool, productId)
      // One fresh family name for both workers, so they share its Redis keys and the key is cold.
      const family = `lab-cold-${randomUUID().slice(0, 8)}`
      const shared = caches.map(({ cache }) =>
        cache.family<Product>(family, {
          l1TtlMs: 1000,
          l2: { ttlMs: 5000, staleMs: 5000 },
          negativeTtlMs: 1000,
        }),
      )
      calls = await statementCalls(pool)
      started = Date.now()
      await Promise.all(
        Array.from({ length: REQUESTS }, (_, n) => shared[n % shared.length]!.get(productId, real.load)),
      )
      const realMs = Date.now() - started
      const realCalls = calls === null ? null : (await statementCalls(pool))! - calls
      await Promise.all(shared.map((f) => f.invalidate(productId)))

      return {
        broken: {
          line: line('cache-aside, no single flight', naive.counter.queries, naiveCalls, naiveMs),
          asExpected: naive.counter.queries >= REQUESTS / 2,
        },
        fixed: {
          line: line('two-level cache, 2 workers', real.counter.queries, realCalls, realMs),
          asExpected: real.counter.queries <= 2,
        },
      }
    } finally {
      for (const c of caches) c.close()
      redis.disconnect()
      await pool.end()
    }
  },
}
