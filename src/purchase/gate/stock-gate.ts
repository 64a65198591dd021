import { randomUUID } from 'node:crypto'
import type { Redis, Result } from 'ioredis'
import type { IdempotentRequest } from '../../idempotency/idempotency.js'
import { serverRunIdOf } from '../../redis/client.js'
import type { PendingGateRelease } from './gate-outbox.repository.js'
import { defineScripts } from '../../redis/scripts.js'

// Redis key layout of the flash-sale gate. The `{<id>}` hash tag keeps one sale's keys in one slot,
// so the scripts stay valid on a Redis Cluster.
//   sale:{<id>}:gate    hash   available, starts_ms, ends_ms, per_user_limit, expire_ms, and two fences:
//                              fence   the flash_sale_stock.version the gate was built from
//                              run_id  the Redis server it was built on (INFO server's run_id)
//   sale:{<id>}:users   hash   user id -> units held in the sale (reserved + paid)
//   sale:{<id>}:tokens    zset   "<userId>:<qty>:<uuid>" -> deadline ms by Redis' clock: admitted, not yet an order
//   sale:{<id>}:released  set    ids of released orders whose units this gate got back, so a release
//                                applied twice (its process and the reconciler) counts once
//   sale:{<id>}:idem:<userId>:<key>      string  a purchase's Idempotency-Key state (idempotency.ts'
//                                                JSON: in flight, finished, outcome unknown)
//   sale:{<id>}:rl:user:<userId>  counter  the buyer's purchases in this sale's current rate window
//   sale:{<id>}:rl:sale            counter  the sale's purchases in its current rate window
// Every time the gate compares is Redis' clock (TIME in the scripts, and key expiry): the sale window,
// token deadlines, rate windows. Workers and the jobs process whose clocks disagree decide alike.
// The gate, users, tokens and released keys expire together, GATE_KEPT_AFTER_END_SECONDS after the sale ends
// (gate-build.lua sets it; a script that creates one of the others later gives it the gate's expire_ms).
// The key and the counters carry the sale's tag so that one script (gate-purchase.lua) decides a whole
// purchase on one hash slot. So the per-user rate limit counts per user per sale, and a key used on
// another endpoint is not seen here: Postgres' idempotency_keys record still refuses its reuse (422).
// A gate whose run_id is not the server's own was built before Redis restarted and may lack the writes
// the restart lost: it counts as missing until it is rebuilt from Postgres (gate-build.lua), which
// replaces all four keys at once.
const keys = (saleId: number) => {
  const tag = `sale:{${saleId}}`
  return { gate: `${tag}:gate`, users: `${tag}:users`, tokens: `${tag}:tokens`, released: `${tag}:released` }
}
const keyOf = (saleId: number, request: IdempotentRequest) =>
  `sale:{${saleId}}:idem:${request.userId}:${request.key}`

declare module 'ioredis' {
  interface RedisCommander<Context> {
    gatePurchase(
      gate: string,
      users: string,
      tokens: string,
      idempotencyKey: string,
      userCounter: string,
      saleCounter: string,
      decided: string,
      ...args: (string | number)[]
    ): Result<(string | number)[], Context>
    gateReleaseToken(gate: string, users: string, tokens: string, token: string): Result<number, Context>
    gateConfirm(numberOfKeys: number, ...keysAndArgs: (string | number)[]): Result<number, Context>
    gateReleaseOrder(
      gate: string,
      users: string,
      released: string,
      userId: string,
      quantity: number,
      orderId: string,
      version: number,
      allowanceUnits: number,
    ): Result<number, Context>
    gateBuild(
      gate: string,
      users: string,
      tokens: string,
      released: string,
      ...args: (string | number)[]
    ): Result<number, Context>
  }
}

/** A purchase as the gate decides it; `key` and `limits` are left out by callers that have none. */
export interface GateRequest {
  saleId: number
  userId: string
  quantity: number
  key?: {
    request: IdempotentRequest
    /** How long the in-flight state lives if its worker dies (ms). */
    lockMs: number
    /** How long a final refusal is replayed (ms), and the states stored for each. */
    keepMs: number
    refusals: { soldOut: string; notStarted: string; ended: string }
    /** The outcome-unknown state this request checked in Postgres and found no answer for. */
    verified?: string
  }
  limits?: { windowMs: number; perUser: number; perSale: number }
  /** For a sale with a waiting room: the end of the buyer's lease (its signed admission's). */
  leaseEndsAtMs?: number
}

/** What gate-purchase.lua decided (see its header). */
export type Admission =
  | { outcome: 'admitted'; token: string; available: number }
  | { outcome: 'sold_out' | 'per_user_limit'; available: number; askPostgres: boolean }
  | { outcome: 'not_started' | 'ended' | 'gate_missing' | 'busy' | 'reused' | 'not_admitted' }
  | { outcome: 'rate_limited'; retryAfterMs: number }
  | { outcome: 'replay' | 'verify'; stored: string }

/** An answer to record under a keyed buyer's Idempotency-Key once its batch is settled. */
export interface KeyAnswer {
  request: IdempotentRequest
  /** The buyer's reservation token: the owner of the key's in-flight state. */
  token: string
  /** The key's new state, or '' to free it. */
  state: string
  keepMs: number
}

export interface GateState {
  available: number
  startsAt: Date
  endsAt: Date
  perUserLimit: number
  /** flash_sale_stock.version the numbers were read at. */
  version: number
  usersHolding: { userId: string; units: number }[]
}

/** What applying an order's release did (see gate-release-order.lua). */
export type GateReleaseOutcome = 'applied' | 'applied_before' | 'gate_built_after' | 'gate_missing'

const RELEASE_OUTCOMES = {
  1: 'applied',
  0: 'applied_before',
  [-1]: 'gate_built_after',
  [-2]: 'gate_missing',
} as const

/**
 * A gate built when its sale's keys are about to go, or went long ago (a buyer of a sale that ended
 * long ago asks for it), lives a minute from its build instead: long enough to answer "ended".
 */
const LATE_BUILD_MS = 5_000
const LATE_GATE_KEPT_MS = 60_000

/**
 * When a gate built at `nowMs` for a sale ending at `endsAt` expires, in ms since the epoch:
 * `keptAfterEndMs` after the end (GATE_KEPT_AFTER_END_SECONDS), unless that is less than LATE_BUILD_MS
 * away.
 */
export function gateExpiresAt(endsAt: Date, nowMs: number, keptAfterEndMs: number): number {
  const kept = endsAt.getTime() + keptAfterEndMs
  return kept - nowMs >= LATE_BUILD_MS ? kept : nowMs + LATE_GATE_KEPT_MS
}

/** What building a gate did: built it, found it current already, or could not (run id unknown). */
export type GateBuild = 'built' | 'current' | 'redis_unknown'

/** A token's parts: who reserved how many units. */
export function parseToken(token: string): { userId: string; quantity: number } {
  const [userId, quantity] = token.split(':')
  return { userId: userId!, quantity: Number(quantity) }
}

export function createStockGate(
  redis: Redis,
  options: {
    tokenTtlMs: number
    /** How long the sale's keys stay after it ends (GATE_KEPT_AFTER_END_SECONDS); 30 minutes unless given. */
    keptAfterEndMs?: number
  },
) {
  const keptAfterEndMs = options.keptAfterEndMs ?? 30 * 60_000
  defineScripts(redis, import.meta.url, {
    gatePurchase: { file: 'gate-purchase.lua', keys: 7 },
    gateReleaseToken: { file: 'gate-release-token.lua', keys: 3 },
    gateConfirm: { file: 'gate-confirm.lua' },
    gateReleaseOrder: { file: 'gate-release-order.lua', keys: 3 },
    gateBuild: { file: 'gate-build.lua', keys: 4 },
  })
  const runIds = serverRunIdOf(redis)

  return {
    /** How long a sale's keys stay after it ends; the reconciler looks after a sale for half of it. */
    keptAfterEndMs,

    /** The run id of the Redis server, once this process knows it (null while Redis is away). */
    serverRunId: () => runIds.known(),

    /**
     * Decides a purchase in one script (gate-purchase.lua): its key, its rate limits, the sale window,
     * the per-user limit and the stock. Sold out, closed and over-limit answers never touch Postgres.
     * `gate_missing` also means stale: built on a Redis server that has restarted since.
     */
    async decide(request: GateRequest): Promise<Admission> {
      const { saleId, userId, quantity, key, limits } = request
      const k = keys(saleId)
      const token = `${userId}:${quantity}:${randomUUID()}`
      const tag = `sale:{${saleId}}`
      // Concurrency: the script carries the run id this process learnt on the connection it is sent on,
      // and the gate admits only under its own: a gate that survived a restart in the append-only file
      // may believe more units remain than Postgres has, or miss tokens, and is rebuilt from Postgres first.
      const [verdict, value, third] = await redis.gatePurchase(
        k.gate,
        k.users,
        k.tokens,
        key ? keyOf(saleId, key.request) : `${tag}:idem:`,
        `${tag}:rl:user:${userId}`,
        `${tag}:rl:sale`,
        `${tag}:decided`,
        userId,
        quantity,
        request.leaseEndsAtMs ?? '',
        token,
        options.tokenTtlMs,
        runIds.now() ?? (await runIds.known()) ?? '',
        key?.request.requestHash ?? '',
        key?.lockMs ?? 0,
        key?.verified ?? '',
        limits?.windowMs ?? 0,
        limits?.perUser ?? '',
        limits?.perSale ?? '',
        key?.keepMs ?? 0,
        key?.refusals.soldOut ?? '',
        key?.refusals.notStarted ?? '',
        key?.refusals.ended ?? '',
      )
      switch (verdict) {
        case 'admitted':
          return { outcome: 'admitted', token, available: Number(value) }
        case 'sold_out':
        case 'per_user_limit':
          return { outcome: verdict, available: Number(value), askPostgres: third === 1 }
        case 'rate_limited':
          // The third value: how long the exceeded counter's window has left (its PTTL).
          return { outcome: 'rate_limited', retryAfterMs: Math.max(1, Number(third)) }
        case 'replay':
        case 'verify':
          return { outcome: verdict, stored: String(value) }
        default:
          return {
            outcome: verdict as 'not_started' | 'ended' | 'gate_missing' | 'busy' | 'reused' | 'not_admitted',
          }
      }
    },

    /** Asks the gate for `quantity` units, without a key or rate limits (a test's buyer). */
    admit(saleId: number, userId: string, quantity: number): Promise<Admission> {
      return this.decide({ saleId, userId, quantity })
    },

    /**
     * Stores an answer found in Postgres under a purchase's key (over whatever state it holds): the
     * answer an order committed with, which Redis had forgotten or did not know.
     */
    async recordAnswer(saleId: number, request: IdempotentRequest, state: string, keepMs: number) {
      await redis.set(keyOf(saleId, request), state, 'PX', keepMs)
    },

    /** Releases a token's units to the gate, exactly once (false if it was not in flight any more). */
    async releaseToken(saleId: number, token: string): Promise<boolean> {
      const k = keys(saleId)
      return (await redis.gateReleaseToken(k.gate, k.users, k.tokens, token)) === 1
    },

    /**
     * These tokens' batches committed (each at the version its UPDATE produced; 0 re-takes nothing):
     * they are orders now. Records the keyed buyers' answers in the same call (gate-confirm.lua).
     */
    async confirm(saleId: number, written: { token: string; version: number }[], answers: KeyAnswer[] = []) {
      const k = keys(saleId)
      return redis.gateConfirm(
        3 + answers.length,
        k.gate,
        k.users,
        k.tokens,
        ...answers.map((a) => keyOf(saleId, a.request)),
        written.length,
        ...written.flatMap((w) => [w.token, w.version]),
        ...answers.flatMap((a) => [a.token, a.state, a.keepMs]),
      )
    },

    /**
     * Releases a cancelled or expired order's units to the gate: they are on offer again. Once per
     * order, however often it is called, and not at all into a gate built after the release.
     */
    async releaseOrder(release: PendingGateRelease): Promise<GateReleaseOutcome> {
      const k = keys(release.saleId)
      const code = await redis.gateReleaseOrder(
        k.gate,
        k.users,
        k.released,
        release.userId,
        release.units,
        release.orderId,
        release.version,
        release.allowanceUnits,
      )
      return RELEASE_OUTCOMES[code as keyof typeof RELEASE_OUTCOMES]
    },

    /**
     * Creates the gate from Postgres' numbers, replacing a missing or stale one (its users and tokens
     * too); a gate built on this Redis server already is left alone. Call it with the sale row locked.
     */
    async build(saleId: number, state: GateState): Promise<GateBuild> {
      const k = keys(saleId)
      // One argument for all holders: spread as arguments, 100,000 of them overflow the call stack.
      const holders = JSON.stringify(state.usersHolding.flatMap((u) => [u.userId, u.units]))
      const built = await redis.gateBuild(
        k.gate,
        k.users,
        k.tokens,
        k.released,
        (await runIds.known()) ?? '',
        state.available,
        state.startsAt.getTime(),
        state.endsAt.getTime(),
        state.perUserLimit,
        state.version,
        gateExpiresAt(state.endsAt, Date.now(), keptAfterEndMs),
        holders,
      )
      return built === 1 ? 'built' : built === 0 ? 'current' : 'redis_unknown'
    },

    /**
     * Marks a sale's gate stale, as a Redis restart would: nobody is admitted until it is rebuilt from
     * Postgres (the next purchase, or the reconciler). For a gate found ahead of Postgres.
     */
    async markStale(saleId: number): Promise<void> {
      await redis.hset(keys(saleId).gate, 'run_id', 'stale')
    },

    /** True when the gate exists and was built on the Redis server this process is connected to. */
    async isCurrent(saleId: number): Promise<boolean> {
      const runId = await runIds.known()
      return runId !== null && (await redis.hget(keys(saleId).gate, 'run_id')) === runId
    },

    /** Units the gate still offers, or null when the gate is missing or stale (not to be trusted). */
    async available(saleId: number): Promise<number | null> {
      const [available, runId] = await redis.hmget(keys(saleId).gate, 'available', 'run_id')
      const current = runId !== null && runId === (await runIds.known())
      return available === null || !current ? null : Number(available)
    },

    /** Tokens admitted but not yet orders whose deadline has passed by Redis' clock: their worker may be dead. */
    async tokensPastDeadline(saleId: number): Promise<string[]> {
      // Deadlines are Redis' clock (gate-purchase.lua reads TIME), so "past" is asked of Redis' clock too.
      const [seconds, micros] = await redis.time()
      return redis.zrangebyscore(
        keys(saleId).tokens,
        '-inf',
        Number(seconds) * 1000 + Math.floor(Number(micros) / 1000),
      )
    },

    /**
     * The gate's units and the units in flight, read in one step (MULTI), or null when the gate is
     * missing or stale: for a drift that a buyer admitted between two reads would not fake.
     */
    async snapshot(saleId: number): Promise<{ available: number; inFlight: number } | null> {
      const k = keys(saleId)
      const replies = await redis.multi().hmget(k.gate, 'available', 'run_id').zrange(k.tokens, 0, -1).exec()
      if (!replies || replies.some(([err]) => err)) return null
      const [available, runId] = replies[0]![1] as (string | null)[]
      if (available == null || runId !== (await runIds.known())) return null
      const tokens = replies[1]![1] as string[]
      return {
        available: Number(available),
        inFlight: tokens.reduce((sum, token) => sum + parseToken(token).quantity, 0),
      }
    },

    /** Units admitted by the gate whose orders are not written yet. */
    async unitsInFlight(saleId: number): Promise<number> {
      const tokens = await redis.zrange(keys(saleId).tokens, 0, -1)
      return tokens.reduce((sum, token) => sum + parseToken(token).quantity, 0)
    },
  }
}

export type StockGate = ReturnType<typeof createStockGate>
