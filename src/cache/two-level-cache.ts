import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Redis, Result } from 'ioredis'
import { LRUCache } from 'lru-cache'
import type { Metrics } from '../metrics.js'
import { defineScripts } from '../redis/scripts.js'
import type { Log } from '../log.js'

// A read-through cache in two levels: L1 in this worker's memory (an LRU with a short TTL), L2 in
// Redis (shared by every worker, longer TTL), then the loader (the database). See docs/caching.md.
//
// Redis key layout (<ref> is `<family>:<id>`, e.g. `product:42`):
//   cache:v1:<ref>       the entry: JSON {v: value, e: fresh-until ms} or {n: 1, e} for "not found"
//   cache:ver:<ref>      a counter every write INCRs before it deletes the entry (set-if-version.lua)
//   cache:lock:<ref>     the rebuild lock: one worker loads a missing entry, the others wait or serve stale
//   cache:written:<ref>  present for a moment after a write: loaders should read the primary
//   channel cache:invalidate   publishes <ref> on every write; every worker evicts it from its L1

declare module 'ioredis' {
  interface RedisCommander<Context> {
    cacheSetIfVersion(
      entryKey: string,
      versionKey: string,
      version: string,
      entry: string,
      ttlMs: number,
    ): Result<number, Context>
    cacheReleaseLock(lockKey: string, token: string): Result<number, Context>
  }
}

export const INVALIDATION_CHANNEL = 'cache:invalidate'

export const cacheKeys = {
  entry: (ref: string) => `cache:v1:${ref}`,
  version: (ref: string) => `cache:ver:${ref}`,
  lock: (ref: string) => `cache:lock:${ref}`,
  written: (ref: string) => `cache:written:${ref}`,
}

/** How one family of keys (products, sales, ...) is cached; declared once, beside its loader. */
export interface CachePolicy {
  /** How long a worker keeps an entry in memory, ±20%. A write evicts it sooner, through pub/sub. */
  l1TtlMs: number
  /**
   * Redis: how long an entry is fresh (±20%), and how much longer it may be served stale while one
   * worker rebuilds it. `false` keeps the family in memory only (e.g. a sale's remaining stock).
   */
  l2: { ttlMs: number; staleMs: number } | false
  /** How long a "not found" is remembered, in both layers, so a repeated unknown id costs no query. */
  negativeTtlMs: number
}

export interface LoadContext {
  /**
   * The key was written within the last few moments (`recentWriteMs`): the replica may not have the
   * write yet, so read the primary. Always false for memory-only families.
   */
  recentlyWritten: boolean
}

/** Loads the value from the source of truth; `undefined` means "does not exist" (cached as negative). */
export type Loader<T> = (context: LoadContext) => Promise<T | undefined>

export interface CacheFamily<T> {
  get(id: string | number, loader: Loader<T>): Promise<T | undefined>
  /** Call after the database write committed: every worker stops serving the old value. */
  invalidate(id: string | number): Promise<void>
}

export interface TwoLevelCache {
  /** Declares a family of keys with its policy; values must be JSON (they are stored as JSON). */
  family<T>(name: string, policy: CachePolicy): CacheFamily<T>
  /** Subscribes to invalidations; waits at most a moment, so a worker starts even with Redis down. */
  start(): Promise<void>
  close(): void
}

export interface TwoLevelCacheOptions {
  redis: Redis
  /** A second connection for pub/sub: a subscribed connection cannot run other commands. */
  subscriber: Redis
  metrics: Pick<Metrics, 'cacheRequests' | 'cacheLoadSeconds'>
  log: Log
  /** How long after a write loaders are told `recentlyWritten` (cover the replica's lag bound). */
  recentWriteMs: number
  /** L1 capacity, in entries, over all families. */
  maxEntries?: number
  /** How long the rebuild lock lives if its holder dies. */
  lockTtlMs?: number
  /** How long a worker without the lock polls L2 for the holder's result before loading itself. */
  lockWaitMs?: number
  pollMs?: number
}

type Layer = 'l1' | 'l2' | 'db'
type Outcome = 'hit' | 'miss' | 'negative' | 'stale' | 'error'

interface StoredEntry {
  v?: unknown
  n?: 1
  e: number
}

interface Flight {
  promise: Promise<unknown>
  /** Set when an invalidation arrives meanwhile: the result may predate the write, keep it out of L1. */
  superseded: boolean
}

/** ±20%, so entries written together do not all expire together (cache avalanche). */
const jitter = (ms: number) => Math.round(ms * (0.8 + Math.random() * 0.4))

function parseEntry(raw: string): { value: unknown; freshUntil: number } | undefined {
  try {
    const entry = JSON.parse(raw) as StoredEntry
    if (typeof entry.e !== 'number') return undefined
    return { value: entry.n === 1 ? undefined : entry.v, freshUntil: entry.e }
  } catch {
    return undefined
  }
}

export function createTwoLevelCache(options: TwoLevelCacheOptions): TwoLevelCache {
  const { redis, subscriber, metrics, log, recentWriteMs } = options
  const lockTtlMs = options.lockTtlMs ?? 2000
  const lockWaitMs = options.lockWaitMs ?? 500
  const pollMs = options.pollMs ?? 20
  const l1 = new LRUCache<string, { value: unknown }>({ max: options.maxEntries ?? 10_000 })
  const flights = new Map<string, Flight>()
  const families = new Set<string>()
  let redisFailing = false

  defineScripts(redis, import.meta.url, {
    cacheSetIfVersion: { file: 'set-if-version.lua', keys: 2 },
    cacheReleaseLock: { file: 'release-lock.lua', keys: 1 },
  })

  // Every read counts once: the labelled child of each (family, layer, result) is looked up by
  // prom-client once, not hashed from its labels on every hit.
  const counters = new Map<string, { inc(): void }>()
  function count(family: string, layer: Layer, result: Outcome) {
    const name = `${family}\n${layer}\n${result}`
    let counter = counters.get(name)
    if (!counter) {
      counter = metrics.cacheRequests.labels({ family, layer, result })
      counters.set(name, counter)
    }
    counter.inc()
  }

  // Reads never fail because Redis does: they go to the loader (still single-flight) and L1 alone
  // keeps the load on the database down. One log line when it starts failing, one when it recovers.
  function redisFailed(family: string, err: unknown) {
    count(family, 'l2', 'error')
    if (!redisFailing) log.warn({ err }, 'cache: Redis unavailable, reading through to the database')
    redisFailing = true
  }
  function redisAnswered() {
    if (redisFailing) log.info({}, 'cache: Redis answers again')
    redisFailing = false
  }

  // Concurrency: an eviction also cuts off the load in flight for that key. Its result may predate
  // the write, so it must not land in L1 after the eviction, and later callers must not join it.
  function evictLocal(ref: string) {
    l1.delete(ref)
    const flight = flights.get(ref)
    if (flight) {
      flight.superseded = true
      flights.delete(ref)
    }
  }

  subscriber.on('message', (channel: string, ref: string) => {
    if (channel === INVALIDATION_CHANNEL) evictLocal(ref)
  })
  // Concurrency: pub/sub is fire-and-forget; invalidations published while this connection was down
  // are lost. After every (re)connect we drop all of L1 rather than serve what we may have missed.
  subscriber.on('ready', () => {
    l1.clear()
    for (const ref of [...flights.keys()]) evictLocal(ref)
  })
  subscriber.on('error', () => undefined) // the app's own connection already logs Redis errors

  async function load<T>(family: string, loader: Loader<T>, context: LoadContext): Promise<T | undefined> {
    const stopTimer = metrics.cacheLoadSeconds.startTimer({ family })
    let value: T | undefined
    try {
      value = await loader(context)
    } catch (err) {
      count(family, 'db', 'error')
      throw err
    } finally {
      stopTimer()
    }
    count(family, 'db', value === undefined ? 'miss' : 'hit')
    // What L1 holds must look exactly like what L2 hands back: JSON, not the loader's own objects.
    return value === undefined ? undefined : (JSON.parse(JSON.stringify(value)) as T)
  }

  async function loadAndStore<T>(
    ref: string,
    family: string,
    policy: CachePolicy & { l2: { ttlMs: number; staleMs: number } },
    loader: Loader<T>,
    context: LoadContext,
    version: string,
    flight: Flight,
  ): Promise<T | undefined> {
    const value = await load(family, loader, context)
    const now = Date.now()
    const freshMs = value === undefined ? policy.negativeTtlMs : jitter(policy.l2.ttlMs)
    const entry: StoredEntry =
      value === undefined ? { n: 1, e: now + freshMs } : { v: value, e: now + freshMs }
    const ttlMs = value === undefined ? freshMs : freshMs + policy.l2.staleMs
    try {
      // Concurrency: version check. We read the version before loading; if a write bumped it since,
      // our value may predate that write, and storing it would undo the invalidation for a whole TTL.
      // The script stores only if the version is unchanged; otherwise the value goes to our caller
      // (who asked before the write finished) but into neither layer.
      const stored = await redis.cacheSetIfVersion(
        cacheKeys.entry(ref),
        cacheKeys.version(ref),
        version,
        JSON.stringify(entry),
        ttlMs,
      )
      if (stored === 0) flight.superseded = true
    } catch (err) {
      redisFailed(family, err)
    }
    return value
  }

  /** Polls L2 while another worker holds the rebuild lock; undefined if it did not finish in time. */
  async function waitForRebuild(ref: string, family: string): Promise<{ value: unknown } | undefined> {
    const deadline = Date.now() + lockWaitMs
    while (Date.now() < deadline) {
      await sleep(pollMs)
      let raw: string | null
      try {
        raw = await redis.get(cacheKeys.entry(ref))
      } catch {
        return undefined
      }
      const entry = raw === null ? undefined : parseEntry(raw)
      if (entry) {
        count(family, 'l2', entry.value === undefined ? 'negative' : 'hit')
        return { value: entry.value }
      }
    }
    return undefined
  }

  async function fromL2OrLoad<T>(
    ref: string,
    family: string,
    policy: CachePolicy & { l2: { ttlMs: number; staleMs: number } },
    loader: Loader<T>,
    flight: Flight,
  ): Promise<T | undefined> {
    let raw: string | null, version: string | null, written: string | null
    try {
      // One round trip: the entry, and the version and write marker as they are before any load.
      ;[raw = null, version = null, written = null] = await redis.mget(
        cacheKeys.entry(ref),
        cacheKeys.version(ref),
        cacheKeys.written(ref),
      )
      redisAnswered()
    } catch (err) {
      redisFailed(family, err)
      return load(family, loader, { recentlyWritten: false })
    }
    const context = { recentlyWritten: written !== null }
    const entry = raw === null ? undefined : parseEntry(raw)
    if (entry && entry.freshUntil > Date.now()) {
      count(family, 'l2', entry.value === undefined ? 'negative' : 'hit')
      return entry.value as T | undefined
    }
    count(family, 'l2', 'miss')

    // Concurrency: the rebuild lock (SET NX PX). Single flight stops a stampede inside one worker;
    // this stops one across workers: when a hot key expires, one worker queries the database while
    // the others serve the stale entry or wait for the new one. The TTL frees the lock if its holder
    // dies; a waiter that waits too long loads itself, so the lock can slow a read but never block it.
    const token = randomUUID()
    let locked: boolean
    try {
      locked = (await redis.set(cacheKeys.lock(ref), token, 'PX', lockTtlMs, 'NX')) === 'OK'
    } catch (err) {
      redisFailed(family, err)
      return load(family, loader, context)
    }
    if (locked) {
      try {
        return await loadAndStore(ref, family, policy, loader, context, version ?? '0', flight)
      } finally {
        redis.cacheReleaseLock(cacheKeys.lock(ref), token).catch(() => undefined)
      }
    }
    if (entry) {
      count(family, 'l2', 'stale')
      return entry.value as T | undefined
    }
    const rebuilt = await waitForRebuild(ref, family)
    if (rebuilt) return rebuilt.value as T | undefined
    return loadAndStore(ref, family, policy, loader, context, version ?? '0', flight)
  }

  async function get<T>(ref: string, family: string, policy: CachePolicy, loader: Loader<T>) {
    const cached = l1.get(ref)
    if (cached) {
      count(family, 'l1', cached.value === undefined ? 'negative' : 'hit')
      return cached.value as T | undefined
    }
    count(family, 'l1', 'miss')

    // Concurrency: single flight. Concurrent misses for one key in this worker share one promise, so
    // 500 requests for a cold product cost one L2 read and at most one query, not 500.
    const running = flights.get(ref)
    if (running) return running.promise as Promise<T | undefined>
    const flight = { superseded: false } as Flight
    const l2 = policy.l2
    const filled =
      l2 === false
        ? load(family, loader, { recentlyWritten: false })
        : fromL2OrLoad(ref, family, { ...policy, l2 }, loader, flight)
    flight.promise = filled
      .then((value) => {
        if (!flight.superseded) {
          const ttl = jitter(value === undefined ? policy.negativeTtlMs : policy.l1TtlMs)
          l1.set(ref, { value }, { ttl })
        }
        return value
      })
      .finally(() => {
        if (flights.get(ref) === flight) flights.delete(ref)
      })
    flights.set(ref, flight)
    return flight.promise as Promise<T | undefined>
  }

  async function invalidate(ref: string, policy: CachePolicy) {
    evictLocal(ref)
    try {
      const write = redis.multi()
      // Concurrency: version before delete. Bumping the version first means a loader that read the
      // old version can no longer store its (possibly older) value after our delete.
      if (policy.l2 !== false) {
        write
          .incr(cacheKeys.version(ref))
          .del(cacheKeys.entry(ref))
          .set(cacheKeys.written(ref), '1', 'PX', recentWriteMs)
      }
      await write.publish(INVALIDATION_CHANNEL, ref).exec()
    } catch (err) {
      // The write itself committed; other workers' L1 expires within its TTL, but L2 keeps the old
      // value until its own TTL. Loud, because that is the one case where a change shows late.
      count(ref.split(':')[0] ?? ref, 'l2', 'error')
      log.error({ err, ref }, 'cache: invalidation failed; other workers may show the old value until TTL')
    }
  }

  return {
    family<T>(name: string, policy: CachePolicy): CacheFamily<T> {
      if (families.has(name)) throw new Error(`cache family ${name} is declared twice`)
      families.add(name)
      return {
        get: (id, loader) => get<T>(`${name}:${id}`, name, policy, loader),
        invalidate: (id) => invalidate(`${name}:${id}`, policy),
      }
    },
    async start() {
      const subscribed = subscriber.subscribe(INVALIDATION_CHANNEL).catch((err: unknown) => {
        log.warn(
          { err },
          'cache: subscribing to invalidations failed; L1 relies on its TTL until Redis is back',
        )
      })
      await Promise.race([subscribed, sleep(2000, undefined, { ref: false })])
    },
    close() {
      subscriber.disconnect()
      l1.clear()
    },
  }
}
