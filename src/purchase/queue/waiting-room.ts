import { createHmac, timingSafeEqual } from 'node:crypto'
import type { Redis, Result } from 'ioredis'
import { NotAdmittedError, SaleNotActiveError, SoldOutError } from '../../errors.js'
import { defineScripts } from '../../redis/scripts.js'

// The waiting room of a sale (docs/waiting-room.md): buyers take a place before the start; from the start,
// places are admitted in rank order, never more admitted-and-undecided buyers than k x the units left;
// an admitted buyer gets a signed admission that the purchase checks, and a lease to buy within.
//
// Redis key layout, under the sale's hash tag (one slot with the gate's keys, src/purchase/gate/stock-gate.ts):
//   sale:{<id>}:queue        zset  user id -> score: fifo, the arrival at nginx; raffle, the draw (queue-join.lua)
//   sale:{<id>}:queue:meta   hash  seq (places taken), cursor (places admitted, in rank order),
//                                  started (the first admission round ran: a raffle's draw is fixed),
//                                  closed (no unit left: waiting places are told, none is taken)
//   sale:{<id>}:admitted     zset  user id -> the end of its lease (ms, Redis' clock)
//   sale:{<id>}:decided      set   admitted users who bought (gate-purchase.lua, or claimLease)
// Every time compared is Redis' own (TIME in the scripts): the start, the leases.
// The keys expire with the sale's gate, GATE_KEPT_AFTER_END_SECONDS after its end.

const keys = (saleId: number) => {
  const tag = `sale:{${saleId}}`
  return {
    queue: `${tag}:queue`,
    meta: `${tag}:queue:meta`,
    admitted: `${tag}:admitted`,
    decided: `${tag}:decided`,
  }
}

declare module 'ioredis' {
  interface RedisCommander<Context> {
    queueJoin(queue: string, meta: string, ...args: (string | number)[]): Result<(string | number)[], Context>
    queueAdmit(
      queue: string,
      meta: string,
      admitted: string,
      decided: string,
      ...args: (string | number)[]
    ): Result<(string | number)[], Context>
    queuePlace(
      queue: string,
      meta: string,
      admitted: string,
      decided: string,
      userId: string,
    ): Result<(string | number)[], Context>
    queueClaim(decided: string, ...args: (string | number)[]): Result<string, Context>
  }
}

/** A sale's waiting room as the queue needs it. */
export interface QueuedSale {
  id: number
  queue: 'fifo' | 'raffle'
  /** The raffle's secret seed (never shown); null for fifo. */
  queueSeed: string | null
  startsAt: Date
  endsAt: Date
}

/** Where a buyer stands, as GET and POST /api/sales/:id/queue answer it. */
export type Place =
  | {
      status: 'waiting'
      /** 1-based: the buyer's rank in admission order (a raffle's is known once the draw is fixed). */
      place: number
      /** Places admitted so far: the buyer is admitted when this reaches its place. */
      admitted: number
      places: number
      /** Whether the draw is fixed (always true for fifo): before it, a raffle's place may still move. */
      drawn: boolean
    }
  | { status: 'admitted'; place: number; admission: string; leaseEndsAt: string; bought: boolean }
  | { status: 'lapsed' | 'sold_out' | 'absent' }

/** One admission round of one sale. */
export interface AdmitRound {
  state: 'upcoming' | 'open' | 'closed'
  /** Places admitted so far (the cursor). */
  admitted: number
  places: number
  admittedNow: number
  /** Leases that ended this round without a purchase. */
  lapsed: number
  undecided: number
}

/**
 * Admissions: `<leaseEndMs>.<HMAC-SHA256 of sale, user and lease end>`, base64url. Verified without a
 * read of anything (no database, no Redis): the signature binds it to the buyer and the sale, so a
 * token passed to another account or used on another sale is refused. Whether its lease still runs is
 * Redis' clock's to say (gate-purchase.lua, or claimLease), not the worker's.
 */
export function createAdmissions(secret: string) {
  const key = createHmac('sha256', secret).update('stampede waiting-room admission v1').digest()
  const mac = (saleId: number, userId: string, endsAtMs: number) =>
    createHmac('sha256', key).update(`${saleId}:${userId}:${endsAtMs}`).digest()
  return {
    sign(saleId: number, userId: string, endsAtMs: number): string {
      return `${endsAtMs}.${mac(saleId, userId, endsAtMs).toString('base64url')}`
    },
    /** The lease's end the admission was signed with, or throws NotAdmittedError. */
    verify(token: string | undefined, saleId: number, userId: string): number {
      if (!token) throw new NotAdmittedError(saleId, 'missing')
      const match = /^(\d{13})\.([A-Za-z0-9_-]{43})$/.exec(token)
      if (!match) throw new NotAdmittedError(saleId, 'invalid')
      const endsAtMs = Number(match[1])
      const given = Buffer.from(match[2]!, 'base64url')
      if (!timingSafeEqual(given, mac(saleId, userId, endsAtMs)))
        throw new NotAdmittedError(saleId, 'invalid')
      return endsAtMs
    },
  }
}

export type Admissions = ReturnType<typeof createAdmissions>

/**
 * The waiting rooms of every sale, in Redis. `admitFactor` is k (admitted and undecided buyers per unit
 * left), `leaseMs` how long an admitted buyer has to buy, `keptAfterEndMs` how long the keys outlive
 * the sale (as the gate's do).
 */
export function createWaitingRoom(
  redis: Redis,
  options: { admissions: Admissions; admitFactor: number; leaseMs: number; keptAfterEndMs: number },
) {
  defineScripts(redis, import.meta.url, {
    queueJoin: { file: 'queue-join.lua', keys: 2 },
    queueAdmit: { file: 'queue-admit.lua', keys: 4 },
    queuePlace: { file: 'queue-place.lua', keys: 4 },
    queueClaim: { file: 'queue-claim.lua', keys: 1 },
  })
  const { admissions } = options
  const expireAt = (sale: { endsAt: Date }) => sale.endsAt.getTime() + options.keptAfterEndMs

  /** `[_, rank, cursor, places, started]`: a waiting place, as queue-join.lua and queue-place.lua return it. */
  const waiting = (reply: (string | number)[]): Place => {
    const [, rank, cursor, places, started] = reply.map(Number)
    return { status: 'waiting', place: rank! + 1, admitted: cursor!, places: places!, drawn: started === 1 }
  }

  async function placeOf(saleId: number, userId: string): Promise<Place> {
    const k = keys(saleId)
    const reply = await redis.queuePlace(k.queue, k.meta, k.admitted, k.decided, userId)
    switch (reply[0]) {
      case 'waiting':
        return Number(reply[5]) ? { status: 'sold_out' } : waiting(reply)
      case 'admitted': {
        const [, leaseEnd, decided, rank] = reply.map(Number)
        return {
          status: 'admitted',
          place: rank! + 1,
          admission: admissions.sign(saleId, userId, leaseEnd!),
          leaseEndsAt: new Date(leaseEnd!).toISOString(),
          bought: decided === 1,
        }
      }
      default:
        return { status: reply[0] as 'lapsed' | 'absent' }
    }
  }

  return {
    /**
     * Takes the buyer's place, or finds the one it has: one buyer, one place, however many tabs and
     * retries. Refuses once the sale ended or sold out. `arrival`: when and in which order nginx read the
     * join, which orders a fifo room's places (queue-join.lua).
     */
    async join(sale: QueuedSale, userId: string, arrival?: { atMs: number; n: number }): Promise<Place> {
      const k = keys(sale.id)
      const reply = await redis.queueJoin(
        k.queue,
        k.meta,
        userId,
        sale.queue,
        sale.queueSeed ?? '',
        sale.endsAt.getTime(),
        expireAt(sale),
        arrival?.atMs ?? '',
        arrival?.n ?? '',
      )
      if (reply[0] === 'ended') throw new SaleNotActiveError(sale.id, 'ended')
      if (reply[0] === 'closed') throw new SoldOutError(sale.id)
      if (reply[0] === 'known') return placeOf(sale.id, userId)
      // A new place, in the same round trip: not admitted yet.
      return waiting(reply)
    },

    placeOf,

    /** One admission round (the jobs process's): `unitsLeft` from the purchase path. */
    async admit(
      sale: Pick<QueuedSale, 'id' | 'startsAt' | 'endsAt'>,
      unitsLeft: number,
    ): Promise<AdmitRound> {
      const k = keys(sale.id)
      const [state, cursor, places, admittedNow, lapsed, undecided] = await redis.queueAdmit(
        k.queue,
        k.meta,
        k.admitted,
        k.decided,
        sale.startsAt.getTime(),
        options.admitFactor,
        options.leaseMs,
        unitsLeft,
        expireAt(sale),
      )
      return {
        state: state as AdmitRound['state'],
        admitted: Number(cursor),
        places: Number(places),
        admittedNow: Number(admittedNow),
        lapsed: Number(lapsed),
        undecided: Number(undecided),
      }
    },

    /**
     * The Postgres path's lease check, by Redis' clock, counting the buyer as decided (the gate path does
     * both inside gate-purchase.lua): NotAdmittedError once the lease has ended.
     */
    async claimLease(saleId: number, userId: string, leaseEndsAtMs: number): Promise<void> {
      const outcome = await redis.queueClaim(keys(saleId).decided, userId, leaseEndsAtMs)
      if (outcome !== 'claimed') throw new NotAdmittedError(saleId, 'lapsed')
    },

    /** The key of the set of decided buyers, for gate-purchase.lua. */
    decidedKey: (saleId: number) => keys(saleId).decided,
  }
}

export type WaitingRoom = ReturnType<typeof createWaitingRoom>
