import { randomUUID } from 'node:crypto'
import type autocannon from 'autocannon'
import type { LoadTestUser } from '../src/auth/load-test-users.js'
import { answerKey, type Headers } from './load.js'

// The crowd of a flash sale, shared by the stampede and the soak. Buyers take turns (round robin over all
// users, each request with that user's own token and a fresh Idempotency-Key), and two kinds of
// misbehaviour are mixed in on purpose:
// - retries: a share of requests reuse the user's previous key, as a client would after a timeout; they
//   must get the first answer again (Idempotent-Replayed: true), never a second order;
// - greedy users: a share of all turns goes to a small group who so try again and again, and hit the
//   per-user limit while units remain.
// With `retryFailed` (the fault campaign), a buyer whose last purchase got a 5xx sends the same key
// again on their next turn, as a careful client would, and every such key is kept in `failedKeys` with
// what each of its answers said, so the campaign can check what the retry got.

export interface BuyerOptions {
  /** Share of requests that resend the user's previous Idempotency-Key. */
  replayShare: number
  /** Share of turns given to the greedy group. */
  greedyShare: number
  /** The sale's units and per-user limit, to size the greedy group. */
  units: number
  limit: number
  /** Resend the key of a purchase that got a 5xx (default false: random replays only). */
  retryFailed?: boolean
}

/** A key whose purchase got a 5xx at least once, and every answer it got, in order. */
export interface FailedKey {
  userId: string
  key: string
  /** "503 SALE_UNAVAILABLE", "201 <order id>", "201 <order id> replayed", "409 SOLD_OUT", ... */
  answers: string[]
}

export interface BuyerTally {
  /** Fresh 201s, and 201s replayed from an earlier key. */
  created: number
  replayed: number
  /** Units in fresh 201 answers. */
  unitsBought: number
  orderIds: Set<string>
  duplicateFreshIds: number
  /** ms since the start: first SOLD_OUT answer, last fresh 201. */
  firstSoldOutMs: number | null
  lastOrderMs: number | null
  /** How long each fresh 201 took, from sending the request to its answer (ms). */
  createdLatencyMs: number[]
  /** How long each 5xx answer took (ms): an outage should be answered fast, not waited out. */
  failedLatencyMs: number[]
  /**
   * Fresh 201s whose reservation had already expired when the answer arrived (the buyer was sold an
   * order the sweeper may take back at once), and the least time any fresh 201 had left (ms). The app
   * and the load run on one machine, so its clock and the order's expiresAt agree.
   */
  expiredOnArrival: number
  leastRemainingMs: number | null
}

export function createBuyers(users: LoadTestUser[], options: BuyerOptions) {
  const run = randomUUID().slice(0, 8)
  // Small enough that each greedy user gets more than `limit` turns before the units run out.
  const greedyCount = Math.max(
    1,
    Math.min(users.length, Math.floor((options.units * options.greedyShare) / (options.limit + 2))),
  )
  const lastKey: (string | undefined)[] = users.map(() => undefined)
  const keysUsed = users.map(() => 0)
  const freshIds = new Set<string>()
  // Per user: the key of a purchase whose answer was a 5xx, to be sent again on their next turn.
  const failed: (string | undefined)[] = users.map(() => undefined)
  const failedKeys = new Map<string, FailedKey>()
  // Every key sent, with its buyer: so a campaign can send them all again after a fault (resendEveryKey).
  const sentKeys = new Map<string, number>()
  let turn = 0
  let nextUser = 0
  let nextGreedy = 0
  let startedAt = Date.now()
  const tally: BuyerTally = {
    created: 0,
    replayed: 0,
    unitsBought: 0,
    orderIds: new Set(),
    duplicateFreshIds: 0,
    firstSoldOutMs: null,
    lastOrderMs: null,
    createdLatencyMs: [],
    failedLatencyMs: [],
    expiredOnArrival: 0,
    leastRemainingMs: null,
  }

  return {
    tally,
    failedKeys,
    /** Every key sent so far, with its buyer's user id and bearer token. */
    *keysSent(): Generator<{ key: string; userId: string; token: string }> {
      for (const [key, u] of sentKeys) yield { key, userId: users[u]!.id, token: users[u]!.token }
    },
    start(at: number) {
      startedAt = at
    },

    /** Makes `request` the next buyer's purchase: their token, and a new key or (sometimes) the last one. */
    next(request: autocannon.Request, context: Record<string, unknown>, saleId: number): autocannon.Request {
      const n = turn++
      const greedyTurn = Math.floor((n + 1) * options.greedyShare) > Math.floor(n * options.greedyShare)
      const u = greedyTurn ? nextGreedy++ % greedyCount : nextUser++ % users.length
      const failedKey = failed[u]
      const retry =
        failedKey !== undefined || (lastKey[u] !== undefined && Math.random() < options.replayShare)
      const key = failedKey ?? (retry ? lastKey[u]! : `${run}-${u}-${++keysUsed[u]!}`)
      lastKey[u] = key
      sentKeys.set(key, u)
      failed[u] = undefined
      context.retry = retry
      context.user = u
      context.key = key
      context.sentAt = performance.now()
      request.method = 'POST'
      request.path = `/api/sales/${saleId}/purchase`
      request.body = '{"quantity":1}'
      request.headers = {
        'content-type': 'application/json',
        authorization: `Bearer ${users[u]!.token}`,
        'idempotency-key': key,
      }
      return request
    },

    /** Reads a purchase answer: order ids from 201s (fresh or replayed), the first SOLD_OUT. */
    record(status: number, body: string, headers: Headers, context: Record<string, unknown>) {
      const t = Date.now() - startedAt
      const u = context.user as number
      const key = context.key as string
      if (options.retryFailed && status >= 500) {
        failed[u] = key
        if (!failedKeys.has(key)) failedKeys.set(key, { userId: users[u]!.id, key, answers: [] })
      }
      if (status >= 500 && typeof context.sentAt === 'number')
        tally.failedLatencyMs.push(performance.now() - context.sentAt)
      const ledger = failedKeys.get(key)
      if (status === 201) {
        const order = JSON.parse(body) as { id: string; expiresAt: string; items: { quantity: number }[] }
        const replayHeader = headers['idempotent-replayed'] ?? headers['Idempotent-Replayed']
        ledger?.answers.push(`201 ${order.id}${replayHeader === 'true' ? ' replayed' : ''}`)
        tally.orderIds.add(order.id)
        if (replayHeader === 'true') {
          tally.replayed++
          return
        }
        tally.created++
        if (freshIds.has(order.id)) tally.duplicateFreshIds++
        freshIds.add(order.id)
        tally.unitsBought += order.items.reduce((sum, item) => sum + item.quantity, 0)
        tally.lastOrderMs = t
        const remainingMs = Date.parse(order.expiresAt) - Date.now()
        if (remainingMs <= 0) tally.expiredOnArrival++
        tally.leastRemainingMs = Math.min(tally.leastRemainingMs ?? Infinity, remainingMs)
        if (typeof context.sentAt === 'number')
          tally.createdLatencyMs.push(performance.now() - context.sentAt)
      } else {
        ledger?.answers.push(answerKey(status, body))
        if (status === 409 && tally.firstSoldOutMs === null && body.includes('"SOLD_OUT"')) {
          tally.firstSoldOutMs = t
        }
      }
    },
  }
}

export type Buyers = ReturnType<typeof createBuyers>
