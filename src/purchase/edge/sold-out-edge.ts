import { createHash } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Queryable } from '../../db/transaction.js'
import type { RunningSale } from '../../sales/sales.repository.js'

// Sold out at the edge, the jobs process's side: which running sales are sold out, which requests are
// retries of a purchase that made an order in each, and which have a waiting room. nginx asks for it a few times a second (./edge.lua) and then answers
// those sales' purchase attempts itself, with the API's own 409 SOLD_OUT (or 403 NOT_ADMITTED for an
// attempt without an admission), so a sold-out stampede costs the workers nothing.

/** One sold-out sale as nginx reads it. */
export interface SoldOutSale {
  id: number
  /** When the sale ends (ms since the epoch): past it the app answers SALE_NOT_ACTIVE, so the edge stops. */
  endsAtMs: number
  /** A guest's attempt at a registered-only sale goes to the app (403 REGISTERED_ONLY comes first there). */
  registeredOnly: boolean
  /** How many orders the sale has: the retries below are re-sent when it changes. */
  orders: number
  /**
   * `<userId>:<Idempotency-Key>` of every order of the sale (any status): a request that sends one of
   * these is a retry of a purchase that made an order, and reaches the app to be replayed.
   */
  retries: string[]
}

/** A running sale with a waiting room: nginx refuses a purchase attempt without an admission (403). */
export interface QueuedSale {
  id: number
  endsAtMs: number
  registeredOnly: boolean
}

/** What nginx fetches: a version (its ETag), the sold-out sales, and the sales with a waiting room. */
export interface EdgeState {
  version: string
  sales: SoldOutSale[]
  queued: QueuedSale[]
}

/** How many running sales one round looks at, the latest to start first; the rest are left to the app. */
export const EDGE_SALES_MAX = 500

/**
 * Keeps the edge's state: built when nginx asks, at most once per `minIntervalMs` (nginx polls every
 * 250 ms; a second nginx, or a second poll, gets the state of the round under way), from Postgres and the
 * gate.
 * A sale is sold out at the edge when its path says no unit is left and none is in flight (the gate's
 * count and tokens under redis-gate, the stock row otherwise): a unit in flight may come back (a batch that
 * fails returns it), so the app keeps answering until it has settled.
 * Concurrency: the state can only be late, never early. It is read after the units were taken, so a unit
 * released (an order cancelled or expired) shows up in the next round, and the sale reopens at the edge
 * within about half a second (a state per 200 ms at most, fetched every 250 ms); meanwhile a buyer hears SOLD_OUT, as from a worker's sold-out memo. Retries are
 * read from Postgres after the sale was found sold out with nothing in flight, so the key of every order a
 * buyer was told about is in the list (an order written later means a unit was released: the sale reopens).
 */
export function createSoldOutEdge(deps: {
  primary: Queryable
  /** The running sales, from Postgres (listRunningSales). */
  runningSales(limit: number): Promise<RunningSale[]>
  /** Units left and in flight on the gate; null when it cannot tell (Redis away): the sale stays open. */
  gateSnapshot: ((saleId: number) => Promise<{ available: number; inFlight: number } | null>) | null
  countOrders(db: Queryable, saleIds: number[]): Promise<Map<number, number>>
  listRetries(db: Queryable, saleId: number): Promise<string[]>
  minIntervalMs: number
  now?: () => number
}) {
  const now = deps.now ?? Date.now
  /** Retries read per sale, with the order count they were read at. */
  const retries = new Map<number, { orders: number; keys: string[] }>()
  let current: { state: EdgeState; body: string; builtAt: number } | null = null
  let building: Promise<{ state: EdgeState; body: string }> | null = null

  async function isSoldOut(sale: RunningSale): Promise<boolean> {
    // Postgres' row first: a gate with no unit left and none in flight has had every batch committed, so
    // its row is at 0 too, and only those sales cost a look at the gate.
    if (sale.available !== 0) return false
    if (!deps.gateSnapshot) return true
    const snapshot = await deps.gateSnapshot(sale.id).catch(() => null)
    return snapshot !== null && snapshot.available === 0 && snapshot.inFlight === 0
  }

  async function build(): Promise<{ state: EdgeState; body: string }> {
    const running = await deps.runningSales(EDGE_SALES_MAX)
    const soldOut = (
      await Promise.all(running.map(async (sale) => ((await isSoldOut(sale)) ? sale : null)))
    ).filter((sale): sale is RunningSale => sale !== null)
    const counts = soldOut.length
      ? await deps.countOrders(
          deps.primary,
          soldOut.map((s) => s.id),
        )
      : new Map<number, number>()
    const sales: SoldOutSale[] = []
    for (const sale of soldOut) {
      const orders = counts.get(sale.id) ?? 0
      const kept = retries.get(sale.id)
      const known =
        kept?.orders === orders ? kept : { orders, keys: await deps.listRetries(deps.primary, sale.id) }
      retries.set(sale.id, known)
      sales.push({
        id: sale.id,
        endsAtMs: sale.endsAt.getTime(),
        registeredOnly: sale.registeredOnly,
        orders,
        retries: known.keys,
      })
    }
    // Retries of sales that are no longer sold out are read again when they are.
    const soldOutIds = new Set(sales.map((s) => s.id))
    for (const id of retries.keys()) if (!soldOutIds.has(id)) retries.delete(id)
    const queued = running
      .filter((sale) => sale.queue)
      .map((sale) => ({ id: sale.id, endsAtMs: sale.endsAt.getTime(), registeredOnly: sale.registeredOnly }))
    const digest = createHash('sha256')
    for (const s of sales) digest.update(`${s.id}:${s.orders}:${s.endsAtMs}:${s.registeredOnly};`)
    for (const q of queued) digest.update(`q${q.id}:${q.endsAtMs}:${q.registeredOnly};`)
    const state = { version: `"${digest.digest('base64url').slice(0, 22)}"`, sales, queued }
    return { state, body: JSON.stringify(state) }
  }

  return {
    /** The current state, built again when the last one is older than `minIntervalMs` (single flight). */
    async read(): Promise<{ state: EdgeState; body: string }> {
      if (current && now() - current.builtAt < deps.minIntervalMs) return current
      building ??= build()
        .then((built) => {
          current = { ...built, builtAt: now() }
          return built
        })
        .finally(() => {
          building = null
        })
      return building
    },
  }
}

export type SoldOutEdge = ReturnType<typeof createSoldOutEdge>

/**
 * GET /edge/sold-out on the jobs process's metrics server: the state as JSON with its version as the
 * ETag; 304 when nginx already has that version (If-None-Match), so an unchanged state costs a header.
 */
export function edgeStateHandler(edge: SoldOutEdge, onError: (err: unknown) => void) {
  return (request: IncomingMessage, response: ServerResponse): void => {
    edge.read().then(
      ({ state, body }) => {
        if (request.headers['if-none-match'] === state.version) {
          response.writeHead(304, { etag: state.version }).end()
          return
        }
        response.writeHead(200, { 'content-type': 'application/json', etag: state.version }).end(body)
      },
      (err: unknown) => {
        onError(err)
        response.writeHead(503, { 'content-type': 'text/plain' }).end('edge state unavailable')
      },
    )
  }
}
