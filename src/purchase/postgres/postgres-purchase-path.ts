import { randomUUID } from 'node:crypto'
import type { Config } from '../../config.js'
import type { Db } from '../../db/pool.js'
import { inAutocommit, statementAbortOf, withTransactionEndingIn } from '../../db/transaction.js'
import {
  NotFoundError,
  PerUserLimitError,
  SaleNotActiveError,
  SoldOutError,
  type AppError,
} from '../../errors.js'
import { replayOrReuseError, savedAnswerOr, type IdempotentRequest } from '../../idempotency/idempotency.js'
import { orderNumberOf, type Order } from '../../orders/order.js'
import { findSale } from '../../sales/sales.repository.js'
import { SALE_STOCK, type RowStrategy } from '../../stock/stock.repository.js'
import { takeKeyThenCountLimits, type Purchase, type PurchasePath } from '../purchase-path.js'
import { createSoldOutMemo } from '../sold-out-memo.js'
import {
  KEY_ANSWERED_MEANWHILE,
  purchaseSaleOrder,
  type SalePurchase,
  type SalePurchaseOutcome,
} from './sale-purchase.repository.js'

/** How long a worker answers SOLD_OUT from memory after Postgres said so. */
const SOLD_OUT_MEMO_MS = 250

/**
 * A flash-sale purchase decided in Postgres alone. One statement (./sale-purchase.repository.ts) checks
 * the sale and the key's saved answer, raises the per-user units within the limit, inserts the order and
 * saves its answer, all or nothing. The atomic strategy puts the stock decrement in that same statement:
 * one round trip, in autocommit. Pessimistic and optimistic run it inside a transaction and reserve the
 * sale row after it, as late as they can (the row strategy, src/stock/stock.repository.ts), the
 * decrement going with COMMIT where the strategy allows. A COMMIT whose answer is lost is
 * CommitOutcomeUnknownError (503): the order and its saved answer committed together or not at all, so a
 * retry with the same key gets the order if it exists and runs afresh if not.
 */
export function createPostgresPurchasePath(deps: {
  db: Db
  rows: RowStrategy
  config: Config
}): PurchasePath {
  const { db, rows, config } = deps
  const soldOut = createSoldOutMemo(SOLD_OUT_MEMO_MS)

  /** The statement's refusals and replays as the errors they answer with; a created order as itself. */
  function orderOrThrow(
    outcome: SalePurchaseOutcome,
    purchase: Purchase,
  ): Extract<SalePurchaseOutcome, { outcome: 'created' }> {
    const { saleId, idempotency } = purchase
    switch (outcome.outcome) {
      case 'created':
        return outcome
      case 'replay':
        throw replayOrReuseError(idempotency!, outcome.saved)
      case 'no_sale':
        throw new NotFoundError(`sale ${saleId}`)
      case 'upcoming':
      case 'ended':
        throw new SaleNotActiveError(saleId, outcome.outcome)
      case 'sold_out':
        throw new SoldOutError(saleId)
      case 'per_user_limit':
        throw new PerUserLimitError()
    }
  }

  /** The atomic strategy: the whole purchase in one prepared statement, no transaction around it. */
  const inOneStatement = async (purchase: SalePurchase, original: Purchase) =>
    orderOrThrow(
      await rows.run(SALE_STOCK, () =>
        inAutocommit(db.primary, (client) => purchaseSaleOrder(client, purchase, true)),
      ),
      original,
    )

  /** Pessimistic and optimistic: the same statement without the stock, then the strategy's reservation. */
  const inTransaction = (purchase: SalePurchase, original: Purchase) =>
    rows.run(SALE_STOCK, () =>
      withTransactionEndingIn(db.primary, async (tx) => {
        const created = orderOrThrow(await purchaseSaleOrder(tx, purchase, false), original)
        const line = { id: purchase.saleId, quantity: purchase.quantity }
        return { last: await rows.reserveLast(tx, SALE_STOCK, [line]), result: created }
      }),
    )

  async function decide(purchase: SalePurchase, original: Purchase): Promise<Order> {
    const attempt = rows.name === 'atomic' ? inOneStatement : inTransaction
    try {
      return (await attempt(purchase, original)).order
    } catch (err) {
      // Another request saved an answer under this key after the statement's snapshot: the statement
      // aborted and nothing was written; run again, it sees that answer and replays it.
      if (statementAbortOf(err, KEY_ANSWERED_MEANWHILE) === null) throw err
      return (await attempt(purchase, original)).order
    }
  }

  /** A refusal for a keyed request asks Postgres for the key's saved answer first (Redis may have forgotten it). */
  const refuse = (idempotency: IdempotentRequest | null, refusal: AppError) =>
    savedAnswerOr(db.primary, idempotency, refusal)

  return {
    strategy: rows.name,
    admit: takeKeyThenCountLimits,

    async purchase(purchase) {
      const { userId, saleId, quantity, idempotency } = purchase
      // Concurrency: a worker that just saw the sale sold out answers from memory for SOLD_OUT_MEMO_MS,
      // without a transaction; a keyed request still asks for its saved answer (one indexed read).
      if (soldOut.knows(saleId)) throw await refuse(idempotency, new SoldOutError(saleId))
      const orderId = randomUUID()
      const now = Date.now()
      const statement: SalePurchase = {
        saleId,
        userId,
        quantity,
        orderId,
        orderNumber: orderNumberOf(orderId),
        createdAt: new Date(now).toISOString(),
        expiresAt: new Date(now + config.RESERVATION_TTL_SECONDS * 1000).toISOString(),
        key: idempotency,
      }
      // The statement reads the key's saved answer before any refusal of its own (and of the row
      // strategy's after it): a key that has an answer replays it, whatever the stock. Only a buyer of
      // one unit who heard SOLD_OUT knows none is left: one who asked for 2 of the last 1 must not
      // close the sale for the others.
      return decide(statement, purchase).catch((err: unknown) => {
        if (err instanceof SoldOutError && quantity === 1) soldOut.remember(saleId)
        throw err
      })
    },

    // Postgres' own count, from the primary: the replica may lag.
    available: async (saleId) => (await findSale(db.primary, saleId))?.available ?? null,
    inFlight: async () => null,
    // Not from the memo here: a keyed request must ask Postgres for its saved answer before it hears
    // SOLD_OUT (see purchase above), and knownAnswer runs before the key is even looked at.
    knownAnswer: (saleId) => (soldOut.knows(saleId) ? new SoldOutError(saleId) : null),
    saleCreated: async () => {},
    flush: async () => {},
  }
}
