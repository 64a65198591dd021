import type { PoolClient } from 'pg'
import type { StockStrategyName } from '../config.js'
import { PG, pgErrorCode, type Queryable } from '../db/transaction.js'
import { OutOfStockError, SoldOutError, StockConflictError, type AppError } from '../errors.js'
import { retryStockConflicts, type RetryHooks, type RetryPolicy } from './stock-retry.js'

// Every statement that moves units between available, reserved and sold lives here, for both stock
// tables: the three row strategies that reserve, and release, sell, allot and the batch reservation.

/**
 * A table that holds stock: `inventory` (one row per product, for cart checkouts) or
 * `flash_sale_stock` (one row per sale). Both have available / reserved / sold / version columns and a
 * CHECK that keeps available >= 0 and the three buckets summing to the total. Neither is the row that
 * orders reference (products, flash_sales): a foreign key locks the row it points at.
 */
export interface StockTable {
  table: 'inventory' | 'flash_sale_stock'
  key: 'product_id' | 'sale_id'
  shortage(id: number): AppError
}

export const PRODUCT_STOCK: StockTable = {
  table: 'inventory',
  key: 'product_id',
  shortage: (productId) => new OutOfStockError(productId),
}

export const SALE_STOCK: StockTable = {
  table: 'flash_sale_stock',
  key: 'sale_id',
  shortage: (saleId) => new SoldOutError(saleId),
}

export interface StockLine {
  /** The stock row's key: a product id in `inventory`, a sale id in `flash_sale_stock`. */
  id: number
  quantity: number
}

/** The strategies that decide in Postgres alone: every one but redis-gate. */
export type RowStrategyName = Exclude<StockStrategyName, 'redis-gate'>

/**
 * A row strategy is one step of a purchase or checkout transaction that its caller owns: the caller
 * runs its other writes (the per-user count, the order, the idempotency record), then calls
 * `reserveLast` for the stock lines and sends what it returns together with COMMIT
 * (withTransactionEndingIn); `run` wraps that whole transaction.
 * Concurrency: the reservation locks the stock rows until COMMIT, and a flash sale's row is the
 * hottest row there is, so it runs last: every statement run while the row is held adds its time to
 * the wait of every other buyer of that row. Where it can (atomic, pessimistic), the reservation's
 * UPDATE goes to Postgres in one round trip with COMMIT, so the row is never held while this process
 * is busy with other requests.
 */
export interface RowStrategy {
  name: RowStrategyName
  /**
   * Reserves the lines as the transaction's last step. Returns the statement to send together with
   * COMMIT, or null when the reservation ran already (optimistic).
   */
  reserveLast(tx: PoolClient, stock: StockTable, lines: StockLine[]): Promise<string | null>
  /**
   * Runs the caller's whole transaction: again after a backoff when it lost a race that rolled it
   * back (pessimistic's lock timeout), and with the row CHECK's refusal at COMMIT (atomic) thrown as
   * the shortage it means.
   */
  run<T>(stock: StockTable, transaction: () => Promise<T>): Promise<T>
}

export interface RowStrategyOptions {
  lockTimeoutMs: number
  retry: RetryPolicy
  /** Counts conflicts and retries (stock_conflicts_total, stock_retries). */
  hooks: RetryHooks
}

// Concurrency: every strategy touches rows in ascending key order. Two checkouts that hold
// [A, B] and [B, A] would otherwise each lock one row and wait for the other: a deadlock.
export const inKeyOrder = (lines: StockLine[]) => [...lines].sort((a, b) => a.id - b.id)

/**
 * The reservation as plain SQL for withTransactionEndingIn: one UPDATE per line, in key order, with
 * the numbers written in (checked to be integers). No `available >= q` guard: the table's
 * CHECK (available >= 0) refuses a decrement below zero, which aborts the transaction, and COMMIT then
 * commits nothing. Postgres' constraint is the guard, inside the one round trip. Every line names a
 * row the transaction has read (the sale, the cart's products), and stock rows are never deleted.
 */
function decrementsOf(stock: StockTable, lines: StockLine[], returning = ''): string {
  return inKeyOrder(lines)
    .map(({ id, quantity }) => {
      checkedLine(id, quantity)
      return `UPDATE ${stock.table} SET available = available - ${quantity}, reserved = reserved + ${quantity},
          version = version + 1 WHERE ${stock.key} = ${id}${returning}`
    })
    .join(';\n')
}

function checkedLine(id: number, quantity: number): void {
  if (!Number.isSafeInteger(id) || !Number.isSafeInteger(quantity) || quantity < 1)
    throw new Error(`not a stock line: ${id} x ${quantity}`)
}

/**
 * The row's `available >= 0` CHECK refused the decrement: the shortage of the row it names
 * ("Failing row contains (<key>, ..."). Any other error stays what it is.
 */
export function asShortage(err: unknown, stock: StockTable): unknown {
  const constraint = (err as { constraint?: string }).constraint
  if (pgErrorCode(err) !== PG.checkViolation || constraint !== `${stock.table}_available_check`) return err
  const key = /\((\d+),/.exec((err as { detail?: string }).detail ?? '')?.[1]
  return key === undefined ? err : stock.shortage(Number(key))
}

// Concurrency: atomic. The decrement and COMMIT are one round trip, and the row's CHECK
// (available >= 0) is the guard: the second of two buyers of the last unit waits for the first's
// COMMIT, re-reads the row, would take available below zero, and fails. No read, no retry.
function atomic(): RowStrategy {
  return {
    name: 'atomic',
    reserveLast: async (_tx, stock, lines) => decrementsOf(stock, lines),
    run: (stock, transaction) =>
      transaction().catch((err: unknown) => {
        throw asShortage(err, stock)
      }),
  }
}

// Concurrency: pessimistic lock. FOR NO KEY UPDATE makes every other buyer of these rows wait until
// we commit, so what we read is what we write; the app decides, then the decrement goes with COMMIT.
// Not FOR UPDATE: that also conflicts with the KEY SHARE lock which the foreign key of a row inserted
// earlier in the transaction (an order, a per-user count) takes on the same sale row, and two such
// transactions would deadlock. lock_timeout bounds the wait; a timeout aborts the transaction, so the
// whole transaction is retried after a backoff.
// The lock is taken late, right before the decrement that goes with COMMIT: one round trip holds it.
// lock_timeout is set in the same statement: the sub-select runs in the scan, before the row lock is
// waited for.
function pessimistic(options: RowStrategyOptions): RowStrategy {
  const lockAndCheck = async (tx: PoolClient, stock: StockTable, lines: StockLine[]) => {
    const ordered = inKeyOrder(lines)
    const rows = await tx
      .query<{ key: number; available: number }>({
        name: `pessimistic-lock-${stock.table}`,
        text: `SELECT ${stock.key} AS key, available FROM ${stock.table}
                WHERE ${stock.key} = ANY($1::bigint[]) AND (SELECT set_config('lock_timeout', $2, true)) IS NOT NULL
                ORDER BY ${stock.key} FOR NO KEY UPDATE`,
        values: [ordered.map((line) => line.id), `${options.lockTimeoutMs}ms`],
      })
      .then(
        (result) => result.rows,
        (err: unknown) => {
          throw pgErrorCode(err) === PG.lockNotAvailable ? new StockConflictError(ordered[0]!.id) : err
        },
      )
    for (const line of ordered) {
      const row = rows.find((r) => r.key === line.id)
      if (!row || row.available < line.quantity) throw stock.shortage(line.id)
    }
  }
  return {
    name: 'pessimistic',
    async reserveLast(tx, stock, lines) {
      await lockAndCheck(tx, stock, lines)
      return decrementsOf(stock, lines)
    },
    run: (_stock, transaction) => retryStockConflicts(options.retry, transaction, options.hooks),
  }
}

// Concurrency: optimistic lock. Read the row's version, then write only if nobody changed the row
// since: `version = $3` is the guard. Without it two buyers both read available = 1 and both succeed.
// A lost race costs a re-read and a new UPDATE inside the same transaction, after a short backoff: the
// UPDATE that matched no row holds no lock, and what the transaction did before it stays done. (Sending
// the guarded UPDATE with COMMIT and running the whole transaction again on a miss was measured on one
// hot row: the read and the write lie a round trip apart, nearly every attempt lost, and a flash sale
// sold at less than half the rate: docs/benchmarks.md.)
function optimistic(options: RowStrategyOptions): RowStrategy {
  const reserveLine = async (tx: PoolClient, stock: StockTable, line: StockLine) => {
    const { rows } = await tx.query<{ available: number; version: number }>({
      name: `optimistic-read-${stock.table}`,
      text: `SELECT available, version FROM ${stock.table} WHERE ${stock.key} = $1`,
      values: [line.id],
    })
    const row = rows[0]
    if (!row || row.available < line.quantity) throw stock.shortage(line.id)
    const { rowCount } = await tx.query({
      name: `optimistic-update-${stock.table}`,
      text: `UPDATE ${stock.table}
                SET available = available - $2, reserved = reserved + $2, version = version + 1
              WHERE ${stock.key} = $1 AND version = $3 AND available >= $2`,
      values: [line.id, line.quantity, row.version],
    })
    if (rowCount === 0) throw new StockConflictError(line.id)
  }
  return {
    name: 'optimistic',
    async reserveLast(tx, stock, lines) {
      for (const line of inKeyOrder(lines)) {
        await retryStockConflicts(options.retry, () => reserveLine(tx, stock, line), options.hooks)
      }
      return null
    },
    run: (_stock, transaction) => transaction(),
  }
}

export function rowStrategy(name: RowStrategyName, options: RowStrategyOptions): RowStrategy {
  switch (name) {
    case 'optimistic':
      return optimistic(options)
    case 'pessimistic':
      return pessimistic(options)
    case 'atomic':
      return atomic()
  }
}

/**
 * The redis-gate batch's reservation, one UPDATE per sale in key order as plain SQL for
 * withTransactionEndingInReturning, each returning its row's key (`id`) and new version: the gate
 * needs the version to confirm the batch's tokens (gate-confirm.lua). The CHECK (available >= 0) is
 * the guard, as for the atomic strategy; `asShortage` names the row it refused.
 */
export function decrementsReturningVersion(stock: StockTable, lines: StockLine[]): string {
  return decrementsOf(stock, lines, ` RETURNING ${stock.key} AS id, version`)
}

/**
 * Takes `units` out of a product's inventory altogether (on hand and available), for a flash sale that
 * will own them. False when the product does not have that many available.
 * Concurrency: the allotment is a conditional UPDATE (available >= units) like every other decrement,
 * so a sale can never be created from units a checkout took a moment earlier.
 */
export async function allotFromInventory(tx: Queryable, productId: number, units: number): Promise<boolean> {
  const { rowCount } = await tx.query(
    `UPDATE inventory SET on_hand = on_hand - $2, available = available - $2, version = version + 1
      WHERE product_id = $1 AND available >= $2`,
    [productId, units],
  )
  return rowCount === 1
}

/**
 * Moves units from `reserved` back to `available`: a cancelled or expired order releases its stock.
 * Returns each row's new version, by key (a sale's tells the gate whether it was built before or after
 * this release: see gate-release-order.lua).
 */
export async function releaseReserved(
  tx: PoolClient,
  stock: StockTable,
  lines: StockLine[],
): Promise<Map<number, number>> {
  const versions = new Map<number, number>()
  for (const line of inKeyOrder(lines)) {
    const { rows } = await tx.query<{ version: number }>(
      `UPDATE ${stock.table}
          SET available = available + $2, reserved = reserved - $2, version = version + 1
        WHERE ${stock.key} = $1 RETURNING version`,
      [line.id, line.quantity],
    )
    if (rows[0]) versions.set(line.id, rows[0].version)
  }
  return versions
}

/** Moves units from `reserved` to `sold`: a paid order keeps its stock for good. */
export async function sellReserved(tx: PoolClient, stock: StockTable, lines: StockLine[]): Promise<void> {
  for (const line of inKeyOrder(lines)) {
    await tx.query(
      `UPDATE ${stock.table} SET reserved = reserved - $2, sold = sold + $2, version = version + 1
        WHERE ${stock.key} = $1`,
      [line.id, line.quantity],
    )
  }
}
