import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Redis } from 'ioredis'
import { afterAll, describe, expect, it } from 'vitest'
import { loadConfig } from '../config.js'
import { createMetrics, type Metrics } from '../metrics.js'
import { createRedis, duplicateForSubscribing } from '../redis/client.js'
import { cacheKeys, createTwoLevelCache, type CachePolicy, type TwoLevelCache } from './two-level-cache.js'

const config = loadConfig()
const silent = { warn: () => undefined, info: () => undefined, error: () => undefined }
const POLICY: CachePolicy = { l1TtlMs: 60_000, l2: { ttlMs: 60_000, staleMs: 60_000 }, negativeTtlMs: 5000 }

interface Instance {
  cache: TwoLevelCache
  metrics: Metrics
  redis: Redis
}

const opened: Instance[] = []

/** One cache as one worker has it: its own L1, its own Redis connections, its own counters. */
async function newWorkerCache(redisUrl = config.REDIS_URL): Promise<Instance> {
  const redis = createRedis({ ...config, REDIS_URL: redisUrl })
  redis.on('error', () => undefined)
  await redis.connect().catch(() => undefined)
  const subscriber = duplicateForSubscribing(redis)
  const metrics = createMetrics()
  const cache = createTwoLevelCache({ redis, subscriber, metrics, log: silent, recentWriteMs: 2000 })
  await cache.start()
  const instance = { cache, metrics, redis }
  opened.push(instance)
  return instance
}

/** A fresh key family per test, so tests never share keys in Redis. */
const familyName = () => `test-${randomUUID().slice(0, 8)}`

async function counted(metrics: Metrics, layer: string, result: string): Promise<number> {
  const { values } = await metrics.cacheRequests.get()
  return values
    .filter((v) => v.labels.layer === layer && v.labels.result === result)
    .reduce((sum, v) => sum + v.value, 0)
}

/** A loader that counts its calls and answers after `ms`. */
function countingLoader<T>(value: () => T | undefined, ms = 0) {
  const loader = async () => {
    loader.calls++
    if (ms > 0) await sleep(ms)
    return value()
  }
  loader.calls = 0
  return loader
}

afterAll(async () => {
  for (const { cache, redis } of opened) {
    cache.close()
    redis.disconnect()
  }
})

describe('two-level cache', () => {
  it('when a worker reads a key twice, then the first read loads and the second is an L1 hit; another worker gets an L2 hit', async () => {
    const a = await newWorkerCache()
    const b = await newWorkerCache()
    const name = familyName()
    const loader = countingLoader(() => ({ name: 'lamp' }))
    const onA = a.cache.family<{ name: string }>(name, POLICY)
    const onB = b.cache.family<{ name: string }>(name, POLICY)

    expect(await onA.get(1, loader)).toEqual({ name: 'lamp' })
    expect(await onA.get(1, loader)).toEqual({ name: 'lamp' })
    expect(await onB.get(1, loader)).toEqual({ name: 'lamp' })

    expect(loader.calls).toBe(1)
    expect(await counted(a.metrics, 'l1', 'miss')).toBe(1)
    expect(await counted(a.metrics, 'l2', 'miss')).toBe(1)
    expect(await counted(a.metrics, 'db', 'hit')).toBe(1)
    expect(await counted(a.metrics, 'l1', 'hit')).toBe(1)
    expect(await counted(b.metrics, 'l1', 'miss')).toBe(1)
    expect(await counted(b.metrics, 'l2', 'hit')).toBe(1)
    expect(await counted(b.metrics, 'db', 'hit')).toBe(0)
  })

  it('when 500 reads of a cold key arrive at once, then the loader runs exactly once (single flight)', async () => {
    const { cache, metrics } = await newWorkerCache()
    const family = cache.family<{ n: number }>(familyName(), POLICY)
    const loader = countingLoader(() => ({ n: 42 }), 50)

    const results = await Promise.all(Array.from({ length: 500 }, () => family.get(7, loader)))

    expect(loader.calls).toBe(1)
    expect(results.every((r) => r?.n === 42)).toBe(true)
    expect(await counted(metrics, 'l1', 'miss')).toBe(500)
    expect(await counted(metrics, 'l2', 'miss')).toBe(1)
    expect(await counted(metrics, 'db', 'hit')).toBe(1)
  })

  it('when an unknown id is asked for again, then the cached "not found" answers from both layers without loading', async () => {
    const a = await newWorkerCache()
    const b = await newWorkerCache()
    const name = familyName()
    const policy = { ...POLICY, negativeTtlMs: 400 }
    const loader = countingLoader(() => undefined)
    const onA = a.cache.family(name, policy)

    expect(await onA.get(404, loader)).toBeUndefined()
    expect(await onA.get(404, loader)).toBeUndefined()
    expect(await b.cache.family(name, policy).get(404, loader)).toBeUndefined()

    expect(loader.calls).toBe(1)
    expect(await counted(a.metrics, 'db', 'miss')).toBe(1)
    expect(await counted(a.metrics, 'l1', 'negative')).toBe(1)
    expect(await counted(b.metrics, 'l2', 'negative')).toBe(1)

    // Past the negative TTL (±20%) the loader is asked again: a product created meanwhile shows up.
    await sleep(600)
    expect(await onA.get(404, loader)).toBeUndefined()
    expect(loader.calls).toBe(2)
  })

  it('when two workers miss the same key at once, then one loads behind the Redis lock and the other waits for its result', async () => {
    const a = await newWorkerCache()
    const b = await newWorkerCache()
    const name = familyName()
    const loader = countingLoader(() => ({ n: 1 }), 150)

    const [onA, onB] = await Promise.all([
      a.cache.family<{ n: number }>(name, POLICY).get(9, loader),
      b.cache.family<{ n: number }>(name, POLICY).get(9, loader),
    ])

    expect([onA, onB]).toEqual([{ n: 1 }, { n: 1 }])
    expect(loader.calls).toBe(1)
    const waited = (await counted(a.metrics, 'l2', 'hit')) + (await counted(b.metrics, 'l2', 'hit'))
    expect(waited).toBe(1)
  })

  it('when an entry went stale and another worker holds the rebuild lock, then the stale value is served at once', async () => {
    const a = await newWorkerCache()
    const b = await newWorkerCache()
    const name = familyName()
    const policy: CachePolicy = { l1TtlMs: 50, l2: { ttlMs: 200, staleMs: 10_000 }, negativeTtlMs: 1000 }
    let version = 1
    const loader = countingLoader(() => ({ version }), 300)
    const onA = a.cache.family<{ version: number }>(name, policy)
    const onB = b.cache.family<{ version: number }>(name, policy)
    await onA.get(1, loader)
    await sleep(400)
    version = 2

    const rebuilding = onA.get(1, loader)
    await sleep(50)
    const startedAt = Date.now()
    expect(await onB.get(1, loader)).toEqual({ version: 1 })
    expect(Date.now() - startedAt).toBeLessThan(100)
    expect(await rebuilding).toEqual({ version: 2 })
    expect(await counted(b.metrics, 'l2', 'stale')).toBe(1)
    expect(loader.calls).toBe(2)
  })

  it('when a write invalidates during a slow load, then the slow result is stored in neither layer', async () => {
    const { cache, redis } = await newWorkerCache()
    const name = familyName()
    const family = cache.family<{ price: number }>(name, POLICY)
    let price = 1000
    const slow = countingLoader(() => ({ price: 1000 }), 300)

    const stale = family.get(5, slow)
    await sleep(50)
    price = 1500
    await family.invalidate(5)

    expect(await stale).toEqual({ price: 1000 })
    expect(await redis.get(cacheKeys.entry(`${name}:5`))).toBeNull()
    expect(await family.get(5, async () => ({ price }))).toEqual({ price: 1500 })
    expect(JSON.parse((await redis.get(cacheKeys.entry(`${name}:5`)))!)).toMatchObject({ v: { price: 1500 } })
  })

  it('when one worker invalidates a key, then another worker drops its L1 copy within milliseconds', async () => {
    const a = await newWorkerCache()
    const b = await newWorkerCache()
    const name = familyName()
    let price = 1000
    const loader = async () => ({ price })
    const onA = a.cache.family<{ price: number }>(name, POLICY)
    const onB = b.cache.family<{ price: number }>(name, POLICY)
    await onA.get(3, loader)
    await onB.get(3, loader)

    price = 1500
    await onA.invalidate(3)
    const startedAt = Date.now()
    let seen = (await onB.get(3, loader))?.price
    while (seen !== 1500 && Date.now() - startedAt < 500) {
      await sleep(5)
      seen = (await onB.get(3, loader))?.price
    }

    expect(seen).toBe(1500)
    expect(Date.now() - startedAt).toBeLessThan(500)
  })

  it('when a family is memory only (l2: false), then nothing of it reaches Redis', async () => {
    const { cache, redis } = await newWorkerCache()
    const name = familyName()
    const remaining = cache.family<number>(name, { l1TtlMs: 200, l2: false, negativeTtlMs: 200 })
    const loader = countingLoader(() => 17)

    expect(await remaining.get(1, loader)).toBe(17)
    expect(await remaining.get(1, loader)).toBe(17)
    await sleep(300)
    expect(await remaining.get(1, loader)).toBe(17)

    expect(loader.calls).toBe(2)
    expect(await redis.exists(cacheKeys.entry(`${name}:1`), cacheKeys.lock(`${name}:1`))).toBe(0)
  })

  it('when Redis does not answer, then reads still succeed from the loader, single-flight, and count the error', async () => {
    const { cache, metrics } = await newWorkerCache('redis://127.0.0.1:1')
    const family = cache.family<{ n: number }>(familyName(), POLICY)
    const loader = countingLoader(() => ({ n: 5 }), 20)

    const results = await Promise.all(Array.from({ length: 50 }, () => family.get(1, loader)))
    expect(await family.get(1, loader)).toEqual({ n: 5 })

    expect(results.every((r) => r?.n === 5)).toBe(true)
    expect(loader.calls).toBe(1)
    expect(await counted(metrics, 'l2', 'error')).toBe(1)
    expect(await counted(metrics, 'l1', 'hit')).toBe(1)
  })
})
