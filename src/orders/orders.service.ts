import type { PoolClient } from 'pg'
import { emptyCart, lockCartForCheckout } from '../cart/cart.repository.js'
import type { Config } from '../config.js'
import { withTransaction, withTransactionEndingIn } from '../db/transaction.js'
import { CartEmptyError, NotFoundError, OrderTooLargeError, PaymentDeclinedError } from '../errors.js'
import type { Db } from '../db/pool.js'
import { saveResponse, savedAnswerOr, type IdempotentRequest } from '../idempotency/idempotency.js'
import type { Metrics } from '../metrics.js'
import { PRODUCT_STOCK, sellReserved, type RowStrategy } from '../stock/stock.repository.js'
import {
  canPay,
  MAX_ORDER_TOTAL_CENTS,
  publicOrder,
  whyNotCancellable,
  whyNotPayable,
  type Order,
  type StoredOrder,
} from './order.js'
import {
  findOrder,
  findOrderLocked,
  findOrderWithClock,
  insertReservedOrder,
  listOrdersOfUser,
  markCancelledIfReserved,
  markPaidIfStillReserved,
} from './orders.repository.js'
import { releaseOrdersStock, stockOf, type ReleaseHooks } from './order-release.js'
import type { PaymentProvider } from './payment-provider.js'
import { recordCharge } from './payments.repository.js'
import { refundCharge } from './refunds.js'

export interface Caller {
  userId: string
  isAdmin: boolean
}

export interface OrdersDeps {
  db: Db
  config: Config
  /** The row strategy checkout reserves with. */
  rows: RowStrategy
  payments: PaymentProvider
  metrics: Metrics
  /** What a cancellation releases beyond stock rows (src/release-hooks.ts). */
  releaseHooks: ReleaseHooks
}

export function createOrders(deps: OrdersDeps) {
  const { db, config, rows, payments, metrics } = deps

  /** An order as its owner (or an admin) may see it; anyone else gets the same 404 as for no order. */
  async function orderVisibleTo(
    tx: PoolClient | Db['primary'],
    caller: Caller,
    orderId: string,
  ): Promise<StoredOrder> {
    return visibleTo(caller, orderId, await findOrder(tx, orderId))
  }

  function visibleTo<O extends { userId: string }>(caller: Caller, orderId: string, order: O | undefined): O {
    if (!order || (order.userId !== caller.userId && !caller.isAdmin))
      throw new NotFoundError(`order ${orderId}`)
    return order
  }

  /**
   * Turns the caller's cart into a reserved order in one transaction: lock the cart, insert the order
   * at server prices, empty the cart, save the idempotent answer, and last reserve every line's stock
   * with the row strategy, so the inventory rows are held only for that and COMMIT. If the answer to
   * COMMIT is lost (CommitOutcomeUnknownError, 503), a retry with the same key replays the order when
   * it committed, since the order and its saved answer commit together.
   */
  async function checkout(userId: string, idempotency: IdempotentRequest | null): Promise<Order> {
    const order = await rows.run(PRODUCT_STOCK, () =>
      withTransactionEndingIn(db.primary, async (tx) => {
        const lines = await lockCartForCheckout(tx, userId)
        // A keyed retry whose Redis record was lost finds the cart its first attempt emptied: the
        // saved answer (the order) replays instead of CART_EMPTY.
        if (lines.length === 0) throw await savedAnswerOr(tx, idempotency, new CartEmptyError())
        // A cart may hold more than one order can total (100 units of a $1M product): refuse it
        // before taking stock, rather than let the INSERT overflow the column into a 500.
        const total = lines.reduce((sum, line) => sum + line.lineTotalCents, 0)
        if (total > MAX_ORDER_TOTAL_CENTS) throw new OrderTooLargeError(MAX_ORDER_TOTAL_CENTS)
        const created = await insertReservedOrder(tx, {
          userId,
          saleId: null,
          ttlSeconds: config.RESERVATION_TTL_SECONDS,
          reservationToken: null,
          items: lines.map((line) => ({
            productId: line.productId,
            quantity: line.quantity,
            unitPriceCents: line.unitPriceCents,
          })),
        })
        await emptyCart(tx, userId)
        if (idempotency) await saveResponse(tx, idempotency, 201, created)
        const stock = lines.map((line) => ({ id: line.productId, quantity: line.quantity }))
        return { last: await rows.reserveLast(tx, PRODUCT_STOCK, stock), result: created }
      }),
    )
    metrics.ordersTotal.inc({ status: 'reserved' })
    return order
  }

  /**
   * Charges the order and marks it paid. The provider is called outside any transaction (it is slow),
   * with the order's id as its idempotency key, and the charge is recorded before the order changes;
   * the status change afterwards is conditional.
   * Concurrency: two pays of one order at once (two tabs, a retry whose key lock lapsed during a slow
   * charge) make one charge; the second to mark finds the order paid and answers it. An order that
   * expired or was cancelled while the charge ran is not marked paid: its charge is refunded at once,
   * and the refund recorded. A charge whose order stays unpaid (the transaction failed, the buyer never
   * came back) is refunded by the jobs process once the order expires (refundUnusableCharges, in
   * ./refunds.ts).
   */
  async function pay(caller: Caller, orderId: string, idempotency: IdempotentRequest | null): Promise<Order> {
    const read = await findOrderWithClock(db.primary, orderId)
    const order = visibleTo(caller, orderId, read?.order)
    // A keyed retry of a payment that succeeded (its Redis record lost) finds the order paid: the saved
    // answer replays instead of ORDER_NOT_PAYABLE. Payable is judged by Postgres' clock.
    if (!canPay(order, read!.now)) throw await savedAnswerOr(db.primary, idempotency, whyNotPayable(order))
    if (!(await payments.charge(order.id, order.totalCents))) throw new PaymentDeclinedError()
    await recordCharge(db.primary, order.id, order.totalCents)
    type Marked = { paid: Order; fresh: boolean } | { unusable: StoredOrder }
    const outcome = await withTransaction(db.primary, async (tx): Promise<Marked> => {
      if (!(await markPaidIfStillReserved(tx, order.id))) {
        // Read with the row locked: a pay of the same order whose UPDATE came first may not have
        // committed yet, and deciding on the row it is replacing would refund a charge it keeps.
        const current = (await findOrderLocked(tx, order.id))!
        // Paid by the other of two pays at once, with this same charge: the answer is that order, saved
        // under this request's key too.
        if (current.status === 'paid') {
          const paid = publicOrder(current)
          if (idempotency) await saveResponse(tx, idempotency, 200, paid)
          return { paid, fresh: false }
        }
        return { unusable: current }
      }
      const { stock, lines } = stockOf(order)
      await sellReserved(tx, stock, lines)
      const result = publicOrder((await findOrder(tx, order.id))!)
      if (idempotency) await saveResponse(tx, idempotency, 200, result)
      return { paid: result, fresh: true }
    })
    if ('unusable' in outcome) {
      const current = outcome.unusable
      await refundCharge(
        db.primary,
        payments,
        current.id,
        current.status === 'cancelled' ? 'cancelled' : 'expired',
      )
      throw await savedAnswerOr(db.primary, idempotency, whyNotPayable(current))
    }
    if (outcome.fresh) metrics.ordersTotal.inc({ status: 'paid' })
    return outcome.paid
  }

  /**
   * Cancels a reserved order and gives its stock back, exactly once; cancelling twice is a no-op. The
   * units of a sale order stay counted toward the buyer's per-user limit (ReleaseReason).
   */
  async function cancel(caller: Caller, orderId: string): Promise<Order> {
    const { cancelled, release } = await withTransaction(db.primary, async (tx) => {
      const order = await orderVisibleTo(tx, caller, orderId)
      if (!(await markCancelledIfReserved(tx, order.id))) {
        const current = (await findOrder(tx, order.id))!
        const refusal = whyNotCancellable(current)
        if (refusal) throw refusal
        return { cancelled: publicOrder(current), release: null }
      }
      const release = await releaseOrdersStock(tx, [order], 'cancelled', deps.releaseHooks)
      return { cancelled: publicOrder((await findOrder(tx, order.id))!), release }
    })
    if (release) {
      await deps.releaseHooks.afterCommit?.(release)
      metrics.ordersTotal.inc({ status: 'cancelled' })
    }
    return cancelled
  }

  return {
    checkout,
    pay,
    cancel,
    // A user's own orders come from the primary: right after checkout they must see the new order.
    get: async (caller: Caller, orderId: string): Promise<Order> =>
      publicOrder(await orderVisibleTo(db.primary, caller, orderId)),
    list: async (caller: Caller, limit: number): Promise<Order[]> =>
      (await listOrdersOfUser(db.primary, caller.userId, limit)).map(publicOrder),
  }
}

export type Orders = ReturnType<typeof createOrders>
