import type { StockStrategyName } from '../config.js'
import type { AppError } from '../errors.js'
import type { IdempotentRequest } from '../idempotency/idempotency.js'
import type { Order } from '../orders/order.js'
import type { StoredSale } from '../sales/sale.js'
import type { SaleStock } from '../sales/sales.service.js'

/** An answer stored under an Idempotency-Key, sent again as it was. */
export interface StoredAnswer {
  status: number
  body: unknown
}

/**
 * The request's Idempotency-Key as the purchase sees it; the idempotency plugin hands it in
 * (`app.idempotencyKeyOf(request)`) and, for a key taken with `take`, records the answer under it when
 * the response is sent.
 */
export interface PurchaseKey {
  /**
   * Takes the key before any work; when `known` has an answer, records that one under the key instead
   * (and throws it). Returns a stored answer to replay, or null to go on.
   */
  take(known?: () => AppError | null): Promise<StoredAnswer | null>
  /** The key once taken, so the order's transaction saves its answer too; null without a key. */
  readonly taken: IdempotentRequest | null
  /**
   * The key as the request sent it, not taken (400 if malformed; null without one): for a path that
   * takes it in its own step (the gate's script) and records the answer itself.
   */
  parsed(): IdempotentRequest | null
}

/** The rate limits a purchase counts against, per fixed window shared by every worker. */
export interface PurchaseLimits {
  windowMs: number
  perUserPerWindow: number
  perSalePerWindow: number
  /** Counts the purchase in the shared counters (src/rate-limit/): 429 past a limit. */
  check(): Promise<void>
}

/** A buyer's turn in a sale's waiting room (./queue/), its signature already checked. */
export interface PurchaseAdmission {
  /** The end of the buyer's lease (ms), as signed: the gate's script compares it with Redis' clock. */
  leaseEndsAtMs: number
  /** The same check for the Postgres path, by Redis' clock too: 403 NOT_ADMITTED once the lease ended. */
  claim(): Promise<void>
}

/** What a buyer asks for, with the key and the limits a path decides with. */
export interface PurchaseRequest {
  userId: string
  saleId: number
  quantity: number
  key: PurchaseKey
  limits: PurchaseLimits
  /** For a sale with a waiting room, the buyer's turn; null for a sale without one. */
  admission: PurchaseAdmission | null
}

/** One buyer's flash-sale purchase, let through by the key and the limits, ready to be written. */
export interface Purchase {
  userId: string
  saleId: number
  quantity: number
  /** The key the order's transaction saves its answer under; null without one. */
  idempotency: IdempotentRequest | null
  /** The gate's reservation token on the gate path; none on the Postgres path. */
  token?: string
  /** Units the gate has left once this purchase took its own; none on the Postgres path. */
  unitsLeft?: number
}

/**
 * The seam between "a buyer wants units of a sale" and how stock is decided. Two implementations,
 * one picked by src/purchase-wiring.ts from STOCK_STRATEGY:
 * - the Postgres path (src/purchase/postgres/postgres-purchase-path.ts): the key taken, then the rate
 *   limits counted, in two Redis round trips; then one transaction per purchase, reserving the sale's
 *   row with a row strategy (optimistic, pessimistic or atomic);
 * - the gate path (src/purchase/gate/): one Lua script in Redis decides the key, the limits and the
 *   stock; admitted buyers' orders are written to Postgres in batches.
 * Nothing outside the wiring asks which one runs.
 */
export interface PurchasePath extends SaleStock {
  /** Which stock strategy decides: metrics and the audit name it. */
  readonly strategy: StockStrategyName
  /**
   * Takes the key and counts the limits (the gate also decides the stock and reserves the units);
   * returns the purchase to write, or the answer the key already holds; throws the named refusal.
   */
  admit(request: PurchaseRequest): Promise<Purchase | { replay: StoredAnswer }>
  /** Writes the admitted purchase (the Postgres path reserves the units here) and returns the order. */
  purchase(purchase: Purchase): Promise<Order>
  /** Units on offer as this path counts them right now (the gate, or Postgres' row); null when unknown. */
  available(saleId: number): Promise<number | null>
  /** Units admitted but not yet written as orders; null on a path that has no such state. */
  inFlight(saleId: number): Promise<number | null>
  /** An answer this worker knows without asking anyone (a sale it knows is sold out), or null. */
  knownAnswer(saleId: number): AppError | null
  /** A sale was just created: the path prepares what it needs (the gate path builds the gate). */
  saleCreated(saleId: number): Promise<void>
  /** Writes what this worker has accepted; a stopping worker calls it before its pools close. */
  flush(): Promise<void>
}

/**
 * The Postgres path's admission, today's separate steps: the key taken through the idempotency plugin
 * (one Redis round trip), then the rate limits (one more), then, for a sale with a waiting room, the
 * buyer's lease (one more).
 */
export async function takeKeyThenCountLimits(
  request: PurchaseRequest,
): Promise<Purchase | { replay: StoredAnswer }> {
  const stored = await request.key.take()
  if (stored) return { replay: stored }
  await request.limits.check()
  await request.admission?.claim()
  const { userId, saleId, quantity } = request
  return { userId, saleId, quantity, idempotency: request.key.taken }
}

// What both paths keep per worker, each bounded: the sales it found sold out a moment ago, and the
// terms of the sales it sold from.

/** How many sales a worker keeps in each memory; the one kept longest goes first. */
export const MAX_SALES_KEPT = 10_000

/**
 * Remembers, per worker, that a sale was found sold out, for `ttlMs`: by the gate (./gate/) or by
 * Postgres (./postgres/). Most of a stampede's requests arrive after the last unit is gone; with the
 * memo a worker answers them without asking Redis or opening a transaction. A unit released
 * meanwhile (a cancelled order) is offered again at most `ttlMs` later; like a sale page's count, the
 * answer may be that old, and it can never oversell. Pure: no I/O, no metrics.
 */
export function createSoldOutMemo(ttlMs: number, now: () => number = Date.now) {
  const soldOutUntil = new Map<number, number>()
  return {
    remember(saleId: number): void {
      soldOutUntil.delete(saleId)
      if (soldOutUntil.size >= MAX_SALES_KEPT) soldOutUntil.delete(soldOutUntil.keys().next().value!)
      soldOutUntil.set(saleId, now() + ttlMs)
    },
    knows(saleId: number): boolean {
      return (soldOutUntil.get(saleId) ?? 0) > now()
    },
  }
}

/**
 * A sale's terms (price, product, per-user limit) as the orders are written with them. They never
 * change once the sale is created, so each worker reads them once per sale; its window and units are
 * the statement's to check, by Postgres' clock and in Postgres' rows.
 * Concurrency: one lookup per sale and worker at a time (single flight): a stampede's first buyers all
 * wait for the same read instead of taking a pooled connection each. Only a sale that was found is
 * kept; a lookup that failed (a Postgres blip) or found nothing is forgotten as it settles, and the next
 * purchase asks again. Kept, it would fail that sale on this worker until the worker restarted.
 */
export function createSaleTerms<T = StoredSale>(read: (saleId: number) => Promise<T | undefined>) {
  const known = new Map<number, Promise<T | undefined>>()
  return {
    of(saleId: number): Promise<T | undefined> {
      const cached = known.get(saleId)
      if (cached) return cached
      const lookup = read(saleId)
      if (known.size >= MAX_SALES_KEPT) known.delete(known.keys().next().value!)
      known.set(saleId, lookup)
      const forget = () => {
        if (known.get(saleId) === lookup) known.delete(saleId)
      }
      lookup.then((sale) => (sale ? undefined : forget()), forget)
      return lookup
    },
  }
}

export type SaleTerms = ReturnType<typeof createSaleTerms<StoredSale>>
