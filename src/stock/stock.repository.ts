import type { PoolClient } from 'pg'
import type { Queryable } from '../db/transaction.js'
import { OutOfStockError, SoldOutError, StockConflictError, type AppError } from '../errors.js'

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
 * strategy lost a race and the whole transaction should be retried.
 */
export type ReserveStock = (tx: PoolClient, stock: StockTable, lines: StockLine[]) => Promise<void>

// Concurrency: every strategy touches rows in ascending key order. Two checkouts that hold
// [A, B] and [B, A] would otherwise each lock one row and wait for the other: a deadlock.
const inKeyOrder = (lines: StockLine[]) => [...lines].sort((a, b) => a.id - b.id)

// Concurrency: optimistic lock. Read the row's version, then write only if nobody changed the row
// since: `version = $3` is the guard. Without it two buyers both read available = 1 and both succeed.
// Losing the race throws StockConflictError and the caller retries the transaction after a backoff.
const optimistic: ReserveStock = async (tx, stock, lines) => {
  for (const line of inKeyOrder(lines)) {
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
}

// Concurrency: pessimistic lock. FOR UPDATE makes every other buyer of these rows wait until we
// commit, so what we read is what we write. lock_timeout bounds the wait: a timeout becomes a
// StockConflictError that the caller retries, never an error the buyer sees while stock remains.
function pessimistic(lockTimeoutMs: number): ReserveStock {
  return async (tx, stock, lines) => {
    const ordered = inKeyOrder(lines)
    await tx.query(`SELECT set_config('lock_timeout', $1, true)`, [`${lockTimeoutMs}ms`])
    const { rows } = await tx.query<{ key: number; available: number }>(
      `SELECT ${stock.key} AS key, available FROM ${stock.table}
        WHERE ${stock.key} = ANY($1::bigint[]) ORDER BY ${stock.key} FOR UPDATE`,
      [ordered.map((line) => line.id)],
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

export const ROW_STRATEGIES = ['optimistic', 'pessimistic', 'atomic'] as const
export type RowStrategyName = (typeof ROW_STRATEGIES)[number]

/** A row strategy and its name, so that metrics say which strategy really ran. */
export interface RowStrategy {
  name: RowStrategyName
  reserve: ReserveStock
}

export function rowStrategy(name: RowStrategyName, options: { lockTimeoutMs: number }): RowStrategy {
  switch (name) {
    case 'optimistic':
      return { name, reserve: optimistic }
    case 'pessimistic':
      return { name, reserve: pessimistic(options.lockTimeoutMs) }
    case 'atomic':
      return { name, reserve: atomic }
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
