import { randomUUID } from 'node:crypto'
import type { Redis, Result } from 'ioredis'
import { luaScript } from '../redis/lua.js'

// Redis key layout of the flash-sale gate. The `{<id>}` hash tag keeps one sale's keys in one slot,
// so the scripts stay valid on a Redis Cluster.
//   sale:{<id>}:gate    hash   stock, starts_ms, ends_ms, per_user_limit, fence
//   sale:{<id>}:users   hash   user id -> units held in the sale (reserved + paid)
//   sale:{<id>}:tokens  zset   "<userId>:<qty>:<uuid>" -> deadline ms: admitted, not yet an order
const keys = (saleId: number) => {
  const tag = `sale:{${saleId}}`
  return { gate: `${tag}:gate`, users: `${tag}:users`, tokens: `${tag}:tokens` }
}

declare module 'ioredis' {
  interface RedisCommander<Context> {
    gateAdmit(
      gate: string,
      users: string,
      tokens: string,
      userId: string,
      quantity: number,
      nowMs: number,
      token: string,
      deadlineMs: number,
    ): Result<[number, number], Context>
    gateRelease(gate: string, users: string, tokens: string, token: string): Result<number, Context>
    gateConfirm(
      gate: string,
      users: string,
      tokenSet: string,
      version: number,
      ...tokens: string[]
    ): Result<number, Context>
    gateGiveBack(gate: string, users: string, userId: string, quantity: number): Result<number, Context>
    gateBuild(gate: string, users: string, ...args: (string | number)[]): Result<number, Context>
  }
}

export type Admission =
  | { outcome: 'admitted'; token: string; remaining: number }
  | { outcome: 'sold_out' | 'not_started' | 'ended' | 'per_user_limit'; remaining: number }
  | { outcome: 'gate_missing' }

const OUTCOMES = { 0: 'sold_out', [-2]: 'not_started', [-3]: 'ended', [-4]: 'per_user_limit' } as const

export interface GateState {
  available: number
  startsAt: Date
  endsAt: Date
  perUserLimit: number
  /** flash_sales.version the numbers were read at. */
  version: number
  usersHolding: { userId: string; units: number }[]
}

/** A token's parts: who reserved how many units. */
export function parseToken(token: string): { userId: string; quantity: number } {
  const [userId, quantity] = token.split(':')
  return { userId: userId!, quantity: Number(quantity) }
}

export function createStockGate(redis: Redis, options: { tokenTtlMs: number }) {
  const scripts = {
    gateAdmit: { numberOfKeys: 3, file: 'gate-admit.lua' },
    gateRelease: { numberOfKeys: 3, file: 'gate-release.lua' },
    gateConfirm: { numberOfKeys: 3, file: 'gate-confirm.lua' },
    gateGiveBack: { numberOfKeys: 2, file: 'gate-give-back.lua' },
    gateBuild: { numberOfKeys: 2, file: 'gate-build.lua' },
  }
  // defineCommand sends EVALSHA and falls back to EVAL on NOSCRIPT, so a SCRIPT FLUSH (or a Redis
  // restart) mid-sale costs one extra round trip, not an error.
  for (const [name, script] of Object.entries(scripts)) {
    if (!(name in redis)) {
      redis.defineCommand(name, {
        numberOfKeys: script.numberOfKeys,
        lua: luaScript(script.file, import.meta.url),
      })
    }
  }

  return {
    /** Asks the gate for `quantity` units; sold out, closed and over-limit answers never touch Postgres. */
    async admit(saleId: number, userId: string, quantity: number): Promise<Admission> {
      const k = keys(saleId)
      const now = Date.now()
      const token = `${userId}:${quantity}:${randomUUID()}`
      const [code, remaining] = await redis.gateAdmit(
        k.gate,
        k.users,
        k.tokens,
        userId,
        quantity,
        now,
        token,
        now + options.tokenTtlMs,
      )
      if (code === 1) return { outcome: 'admitted', token, remaining }
      if (code === -1) return { outcome: 'gate_missing' }
      return { outcome: OUTCOMES[code as keyof typeof OUTCOMES], remaining }
    },

    /** Returns a token's units, exactly once (false if it was not in flight any more). */
    async release(saleId: number, token: string): Promise<boolean> {
      const k = keys(saleId)
      return (await redis.gateRelease(k.gate, k.users, k.tokens, token)) === 1
    },

    /** The batch that holds these tokens committed at `version`: they are orders now. */
    async confirm(saleId: number, version: number, tokens: string[]): Promise<number> {
      const k = keys(saleId)
      return redis.gateConfirm(k.gate, k.users, k.tokens, version, ...tokens)
    },

    /** A cancelled or expired order's units go back on sale. */
    async giveBack(saleId: number, userId: string, quantity: number): Promise<void> {
      const k = keys(saleId)
      await redis.gateGiveBack(k.gate, k.users, userId, quantity)
    },

    /** Creates the gate from Postgres' numbers unless it exists; true if it built one. */
    async build(saleId: number, state: GateState): Promise<boolean> {
      const k = keys(saleId)
      const holders = state.usersHolding.flatMap((u) => [u.userId, u.units])
      const built = await redis.gateBuild(
        k.gate,
        k.users,
        state.available,
        state.startsAt.getTime(),
        state.endsAt.getTime(),
        state.perUserLimit,
        state.version,
        ...holders,
      )
      return built === 1
    },

    /** Units the gate still offers, or null when the gate is missing. */
    async remaining(saleId: number): Promise<number | null> {
      const stock = await redis.hget(keys(saleId).gate, 'stock')
      return stock === null ? null : Number(stock)
    },

    /** Tokens admitted but not yet orders whose deadline is before `nowMs`: their worker may be dead. */
    async tokensPastDeadline(saleId: number, nowMs: number): Promise<string[]> {
      return redis.zrangebyscore(keys(saleId).tokens, '-inf', nowMs)
    },

    /** Units admitted by the gate whose orders are not written yet. */
    async unitsInFlight(saleId: number): Promise<number> {
      const tokens = await redis.zrange(keys(saleId).tokens, 0, -1)
      return tokens.reduce((sum, token) => sum + parseToken(token).quantity, 0)
    },
  }
}

export type StockGate = ReturnType<typeof createStockGate>
