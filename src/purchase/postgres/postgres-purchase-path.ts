import { randomUUID } from 'node:crypto'
import type { Config } from '../../config.js'
import type { Db } from '../../db/pool.js'
import { inAutocommit, statementAbortOf, withTransactionEndingIn } from '../../db/transaction.js'
import { NotFoundError, SaleUnavailableError, SoldOutError, type AppError } from '../../errors.js'
import { savedAnswerOr, type IdempotentRequest } from '../../idempotency/idempotency.js'
import type { Order } from '../../orders/order.js'
import type { StoredSale } from '../../sales/sale.js'
import { findSale } from '../../sales/sales.repository.js'
import { SALE_STOCK, type RowStrategy } from '../../stock/stock.repository.js'
import {
  createSaleTerms,
  createSoldOutMemo,
  takeKeyThenCountLimits,
  type PurchasePath,
} from '../purchase-path.js'
import {
  KEY_ANSWERED_MEANWHILE,
  RESERVATION_LAPSED,
  writeSaleOrders,
  type SaleBuyer,
  type SaleOrderAnswer,
} from '../sale-orders.repository.js'

/** How long a worker answers SOLD_OUT from memory after Postgres said so. */
const SOLD_OUT_MEMO_MS = 250

/**
 * A flash-sale purchase decided in Postgres alone. The shared writer's one statement (../sale-orders.repository.ts)
 * checks the sale and the key's saved answer, raises the per-user units within the limit, inserts the
 * order and saves its answer, all or nothing. The atomic strategy puts the stock decrement in that same
 * statement: one round trip, in autocommit. Pessimistic and optimistic run it inside a transaction and
 * reserve the sale row after it, as late as they can (the row strategy, src/stock/stock.repository.ts),
 * the decrement going with COMMIT where the strategy allows. A COMMIT whose answer is lost is
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
  const terms = createSaleTerms((saleId) => findSale(db.primary, saleId))
  const ttlSeconds = config.RESERVATION_TTL_SECONDS

  /** The written order, or the statement's refusal or replay thrown. */
  async function written(write: Promise<Map<SaleBuyer, SaleOrderAnswer>>): Promise<Order> {
    const answer = [...(await write).values()][0]!
    if ('error' in answer) throw answer.error
    return answer.order
  }

  /** The atomic strategy: the whole purchase in one prepared statement, no transaction around it. */
  const inOneStatement = (sale: StoredSale, buyer: SaleBuyer) =>
    // The refusal is thrown once the statement has answered: in autocommit, an error thrown inside
    // would read as a COMMIT whose outcome is unknown.
    written(
      rows.run(SALE_STOCK, () =>
        inAutocommit(db.primary, (client) =>
          writeSaleOrders(client, sale, [buyer], { ttlSeconds, stock: 'decrement' }),
        ),
      ),
    )

  /** Pessimistic and optimistic: the same statement without the stock, then the strategy's reservation. */
  const inTransaction = (sale: StoredSale, buyer: SaleBuyer) =>
    rows.run(SALE_STOCK, () =>
      withTransactionEndingIn(db.primary, async (tx) => {
        const order = await written(writeSaleOrders(tx, sale, [buyer], { ttlSeconds, stock: 'check' }))
        const line = { id: sale.id, quantity: buyer.quantity }
        return { last: await rows.reserveLast(tx, SALE_STOCK, [line]), result: order }
      }),
    )

  async function decide(sale: StoredSale, buyer: SaleBuyer): Promise<Order> {
    const attempt = rows.name === 'atomic' ? inOneStatement : inTransaction
    try {
      return await attempt(sale, buyer)
    } catch (err) {
      // The statement waited for the stock row past half the reservation's time: nothing was written.
      if (statementAbortOf(err, RESERVATION_LAPSED) !== null) throw new SaleUnavailableError(err as Error)
      // Another request saved an answer under this key after the statement's snapshot: the statement
      // aborted and nothing was written; run again, it sees that answer and replays it.
      if (statementAbortOf(err, KEY_ANSWERED_MEANWHILE) === null) throw err
      return await attempt(sale, buyer)
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
      const sale = await terms.of(saleId)
      if (!sale) throw new NotFoundError(`sale ${saleId}`)
      const buyer: SaleBuyer = {
        orderId: randomUUID(),
        userId,
        quantity,
        idempotency,
        reservationToken: null,
      }
      // The statement reads the key's saved answer before any refusal of its own (and of the row
      // strategy's after it): a key that has an answer replays it, whatever the stock. Only a buyer of
      // one unit who heard SOLD_OUT knows none is left: one who asked for 2 of the last 1 must not
      // close the sale for the others.
      return decide(sale, buyer).catch((err: unknown) => {
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
