import type pg from 'pg'
import type { PoolClient } from 'pg'
import { PG, pgErrorCode, withTransaction, type Queryable } from '../db/transaction.js'
import { OutOfStockError, SoldOutError, StockConflictError, type AppError } from '../errors.js'
import { retryStockConflicts, type RetryHooks, type RetryPolicy } from './stock-retry.js'

// Every statement that moves units between available, reserved and sold lives here, for both stock
// tables: the three row strategies that reserve, and release, sell, allot and the batch reservation.

/**
 * A table that holds stock: `inventory` (one row per product, for cart checkouts) or `flash_sales`
 * (one row per sale). Both have available / reserved / sold / version columns and a CHECK that
 * keeps available >= 0 and the three buckets summing to the total.
 */
export interface StockTable {
  table: 'inventory' | 'flash_sales'
  key: 'product_id' | 'id'
  shortage(id: number): AppError
}

export const PRODUCT_STOCK: StockTable = {
  table: 'inventory',
  key: 'product_id',
  shortage: (productId) => new OutOfStockError(productId),
}

export const SALE_STOCK: StockTable = {
  table: 'flash_sales',
  key: 'id',
  shortage: (saleId) => new SoldOutError(saleId),
}

export interface StockLine {
  /** The stock row's key: a product id in `inventory`, a sale id in `flash_sales`. */
  id: number
  quantity: number
}

/**
 * Takes each line's quantity from `available` into `reserved`, inside the caller's transaction.
 * Throws the table's shortage error when there is not enough, or StockConflictError when the
 * strategy lost a race it cannot settle inside the transaction.
 */
export type ReserveStock = (tx: PoolClient, stock: StockTable, lines: StockLine[]) => Promise<void>

export const ROW_STRATEGIES = ['optimistic', 'pessimistic', 'atomic'] as const
export type RowStrategyName = (typeof ROW_STRATEGIES)[number]

/**
 * A row strategy: how it reserves, and how it runs the transaction around the reservation.
 * Concurrency: the reservation locks the stock rows until COMMIT, and a flash sale's row is the
 * hottest row there is, so callers run `reserve` as the last statement before COMMIT. Everything else
 * (the per-user count, the order, the idempotency record) goes first, while the row is not held: each
 * statement run under the lock adds its round trip to the time every other buyer of the row waits.
 */
export interface RowStrategy {
  name: RowStrategyName
  reserve: ReserveStock
  /** Runs `work` in one transaction; again after a backoff when the whole transaction lost a race. */
  transaction<T>(pool: pg.Pool, work: (tx: PoolClient) => Promise<T>): Promise<T>
}

export interface RowStrategyOptions {
  lockTimeoutMs: number
  retry: RetryPolicy
  /** Counts conflicts and retries (stock_conflicts_total, stock_retries). */
  hooks: RetryHooks
}

// Concurrency: every strategy touches rows in ascending key order. Two checkouts that hold
// [A, B] and [B, A] would otherwise each lock one row and wait for the other: a deadlock.
const inKeyOrder = (lines: StockLine[]) => [...lines].sort((a, b) => a.id - b.id)

// Concurrency: optimistic lock. Read the row's version, then write only if nobody changed the row
// since: `version = $3` is the guard. Without it two buyers both read available = 1 and both succeed.
// A lost race costs a re-read and a new UPDATE inside the same transaction, after a short backoff:
// the UPDATE that matched no row holds no lock, and what the transaction did before it stays done.
function optimistic(options: RowStrategyOptions): ReserveStock {
  const reserveLine = async (tx: PoolClient, stock: StockTable, line: StockLine) => {
    const { rows } = await tx.query<{ available: number; version: number }>(
      `SELECT available, version FROM ${stock.table} WHERE ${stock.key} = $1`,
      [line.id],
    )
    const row = rows[0]
    if (!row || row.available < line.quantity) throw stock.shortage(line.id)
    const { rowCount } = await tx.query(
      `UPDATE ${stock.table}
          SET available = available - $2, reserved = reserved + $2, version = version + 1
        WHERE ${stock.key} = $1 AND version = $3 AND available >= $2`,
      [line.id, line.quantity, row.version],
    )
    if (rowCount === 0) throw new StockConflictError(line.id)
  }
  return async (tx, stock, lines) => {
    for (const line of inKeyOrder(lines)) {
      await retryStockConflicts(options.retry, () => reserveLine(tx, stock, line), options.hooks)
    }
  }
}

// Concurrency: pessimistic lock. FOR NO KEY UPDATE makes every other buyer of these rows wait until
// we commit, so what we read is what we write. Not FOR UPDATE: that also conflicts with the KEY SHARE
// lock that the foreign key of a row inserted earlier in the transaction (an order, a per-user count)
// takes on the same sale row, and two such transactions would deadlock. lock_timeout bounds the wait;
// a timeout aborts the transaction, so the whole transaction is retried after a backoff.
function pessimistic(lockTimeoutMs: number): ReserveStock {
  return async (tx, stock, lines) => {
    const ordered = inKeyOrder(lines)
    await tx.query(`SELECT set_config('lock_timeout', $1, true)`, [`${lockTimeoutMs}ms`])
    const rows = await tx
      .query<{ key: number; available: number }>(
        `SELECT ${stock.key} AS key, available FROM ${stock.table}
          WHERE ${stock.key} = ANY($1::bigint[]) ORDER BY ${stock.key} FOR NO KEY UPDATE`,
        [ordered.map((line) => line.id)],
      )
      .then(
        (result) => result.rows,
        (err: unknown) => {
          throw pgErrorCode(err) === PG.lockNotAvailable ? new StockConflictError(ordered[0]!.id) : err
        },
      )
    for (const line of ordered) {
      const row = rows.find((r) => r.key === line.id)
      if (!row || row.available < line.quantity) throw stock.shortage(line.id)
      await tx.query(
        `UPDATE ${stock.table}
            SET available = available - $2, reserved = reserved + $2, version = version + 1
          WHERE ${stock.key} = $1`,
        [line.id, line.quantity],
      )
    }
  }
}

// Concurrency: atomic conditional update. The check and the decrement are one statement, so
// Postgres' row lock makes them indivisible: the second of two buyers re-evaluates
// `available >= $2` against the first one's result and matches nothing. No read, no retry.
const atomic: ReserveStock = async (tx, stock, lines) => {
  for (const line of inKeyOrder(lines)) {
    const { rowCount } = await tx.query(
      `UPDATE ${stock.table}
          SET available = available - $2, reserved = reserved + $2, version = version + 1
        WHERE ${stock.key} = $1 AND available >= $2`,
      [line.id, line.quantity],
    )
    if (rowCount === 0) throw stock.shortage(line.id)
  }
}

export function rowStrategy(name: RowStrategyName, options: RowStrategyOptions): RowStrategy {
  const once = <T>(pool: pg.Pool, work: (tx: PoolClient) => Promise<T>) => withTransaction(pool, work)
  switch (name) {
    case 'optimistic':
      return { name, reserve: optimistic(options), transaction: once }
    case 'pessimistic':
      return {
        name,
        reserve: pessimistic(options.lockTimeoutMs),
        transaction: (pool, work) =>
          retryStockConflicts(options.retry, () => withTransaction(pool, work), options.hooks),
      }
    case 'atomic':
      return { name, reserve: atomic, transaction: once }
  }
}

/**
 * Reserves `quantity` units of one row in one conditional UPDATE and returns the row's new version, or
 * null when it does not have that many. The redis-gate batch takes its whole sum this way.
 */
export async function reserveReturningVersion(
  tx: Queryable,
  stock: StockTable,
  id: number,
  quantity: number,
): Promise<number | null> {
  const { rows } = await tx.query<{ version: number }>(
    `UPDATE ${stock.table}
        SET available = available - $2, reserved = reserved + $2, version = version + 1
      WHERE ${stock.key} = $1 AND available >= $2 RETURNING version`,
    [id, quantity],
  )
  return rows[0]?.version ?? null
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

/** Moves units from `reserved` back to `available`: a cancelled or expired order gives its stock back. */
export async function releaseReserved(tx: PoolClient, stock: StockTable, lines: StockLine[]): Promise<void> {
  for (const line of inKeyOrder(lines)) {
    await tx.query(
      `UPDATE ${stock.table}
          SET available = available + $2, reserved = reserved - $2, version = version + 1
        WHERE ${stock.key} = $1`,
      [line.id, line.quantity],
    )
  }
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
