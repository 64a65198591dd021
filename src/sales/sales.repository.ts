import type { Queryable } from '../db/transaction.js'
import { unnestColumns } from '../db/unnest.js'
import type { StoredSale } from './sale.js'

// A sale's terms (flash_sales, written once) with its stock (flash_sale_stock, the row that changes),
// its columns named as StoredSale (sale.ts) names them: the mapping from snake_case is here, once.
const SELECT_SALE = `
  SELECT s.id, s.product_id AS "productId", p.name AS "productName", p.image_url AS "productImageUrl",
         p.price_cents AS "regularPriceCents", s.price_cents AS "priceCents", s.units_total AS "unitsTotal",
         st.available, st.reserved, st.sold, s.per_user_limit AS "perUserLimit",
         s.registered_only AS "registeredOnly", s.queue,
         s.queue_difficulty AS "queueDifficulty", s.starts_at AS "startsAt", s.ends_at AS "endsAt", st.version
    FROM flash_sales s JOIN flash_sale_stock st ON st.sale_id = s.id JOIN products p ON p.id = s.product_id`

export async function findSale(db: Queryable, saleId: number): Promise<StoredSale | undefined> {
  const { rows } = await db.query<StoredSale>({
    name: 'find-sale',
    text: `${SELECT_SALE} WHERE s.id = $1`,
    values: [saleId],
  })
  return rows[0]
}

/**
 * The sales a shop shows: running ones first (those with units left before sold-out ones, the latest to
 * open first), then upcoming ones (starting soonest first), then those that ended in the last hour
 * (latest first). Up to `limit` of each kind: many running sales must not push the upcoming ones off
 * the list. Display only on the replica: `available` orders the running ones and may lag.
 */
export async function listCurrentSales(db: Queryable, limit: number): Promise<StoredSale[]> {
  const { rows } = await db.query<StoredSale>(
    `WITH sale AS (${SELECT_SALE} WHERE s.ends_at > now() - interval '1 hour'),
     placed AS (
       SELECT sale, k.kind, k.age, sale.available = 0 AS sold_out FROM sale,
              LATERAL (SELECT CASE WHEN sale."endsAt" <= now() THEN 2 WHEN sale."startsAt" > now() THEN 1 ELSE 0 END
                                AS kind,
                              CASE WHEN sale."endsAt" <= now() THEN now() - sale."endsAt"
                                   WHEN sale."startsAt" > now() THEN sale."startsAt" - now()
                                   ELSE now() - sale."startsAt" END AS age) k),
     ranked AS (
       SELECT *, row_number() OVER (PARTITION BY kind ORDER BY sold_out, age, (sale).id DESC) AS nth FROM placed)
     SELECT (sale).* FROM ranked WHERE nth <= $1 ORDER BY kind, sold_out, age, (sale).id DESC`,
    [limit],
  )
  return rows
}

/**
 * The sales a load-run dashboard follows: the most recently started first (a sale that has just sold out
 * stays on top, where the shop's list would move it below every sale with units left), then the upcoming
 * ones, soonest first; sales that ended over an hour ago are left out.
 */
export async function listRecentlyStartedSales(db: Queryable, limit: number): Promise<StoredSale[]> {
  const { rows } = await db.query<StoredSale>(
    `${SELECT_SALE} WHERE s.ends_at > now() - interval '1 hour'
      ORDER BY s.starts_at > now(),
               CASE WHEN s.starts_at > now() THEN s.starts_at - now() ELSE now() - s.starts_at END,
               s.id DESC
      LIMIT $1`,
    [limit],
  )
  return rows
}

/**
 * Units the user holds (reserved or paid) in each of these sales where they hold any. One primary-key
 * lookup per sale: the hot table gets no extra index for it.
 */
export async function listUnitsHeldBy(
  db: Queryable,
  userId: string,
  saleIds: number[],
): Promise<{ saleId: number; units: number }[]> {
  const { rows } = await db.query<{ sale_id: string | number; units: number }>(
    `SELECT sale_id, units FROM sale_user_units
      WHERE sale_id = ANY($2::bigint[]) AND user_id = $1 AND units > 0 ORDER BY sale_id`,
    [userId, saleIds],
  )
  return rows.map((row) => ({ saleId: Number(row.sale_id), units: row.units }))
}

/** What a sale's waiting room is run with: its kind, its raffle's secret seed, its window. */
export interface QueueTerms {
  id: number
  queue: 'fifo' | 'raffle' | null
  queueSeed: string | null
  queueDifficulty: number
  startsAt: Date
  endsAt: Date
}

export async function findQueueTerms(db: Queryable, saleId: number): Promise<QueueTerms | undefined> {
  const { rows } = await db.query<QueueTerms & { id: string | number }>(
    `SELECT id, queue, queue_seed AS "queueSeed", queue_difficulty AS "queueDifficulty", starts_at AS "startsAt",
            ends_at AS "endsAt"
       FROM flash_sales WHERE id = $1`,
    [saleId],
  )
  return rows[0] && { ...rows[0], id: Number(rows[0].id) }
}

/** A sale open right now by Postgres' clock, as the edge (src/purchase/edge/) needs it. */
export interface RunningSale {
  id: number
  startsAt: Date
  endsAt: Date
  available: number
  registeredOnly: boolean
  queue: 'fifo' | 'raffle' | null
}

/** Sales open right now (started, not ended), the latest to start first, up to `limit`. */
export async function listRunningSales(db: Queryable, limit: number): Promise<RunningSale[]> {
  const { rows } = await db.query<RunningSale & { id: string | number }>(
    `SELECT s.id, s.starts_at AS "startsAt", s.ends_at AS "endsAt", st.available,
            s.registered_only AS "registeredOnly", s.queue
       FROM flash_sales s JOIN flash_sale_stock st ON st.sale_id = s.id
      WHERE s.starts_at <= now() AND s.ends_at > now()
      ORDER BY s.starts_at DESC, s.id DESC LIMIT $1`,
    [limit],
  )
  return rows.map((row) => ({ ...row, id: Number(row.id) }))
}

/** Sales whose gate may still move: open now, or closed less than `graceSeconds` ago. */
export async function listSalesToReconcile(db: Queryable, graceSeconds: number): Promise<number[]> {
  const { rows } = await db.query<{ id: number }>(
    `SELECT id FROM flash_sales
      WHERE starts_at <= now() AND ends_at > now() - make_interval(secs => $1) ORDER BY id`,
    [graceSeconds],
  )
  return rows.map((row) => row.id)
}

export interface NewSale {
  productId: number
  priceCents: number
  units: number
  perUserLimit: number
  registeredOnly: boolean
  queue: 'fifo' | 'raffle' | null
  queueDifficulty: number
  startsAt: Date
  endsAt: Date
}

/**
 * Inserts a sale whose units were just allotted from its product's inventory (allotFromInventory), if
 * it ends in the future by Postgres' clock (the clock every purchase's window is decided on); returns
 * its id, or undefined when it would already have ended.
 */
export async function insertSale(tx: Queryable, sale: NewSale): Promise<number | undefined> {
  const { rows } = await tx.query<{ id: number }>(
    `WITH s AS (
       INSERT INTO flash_sales (product_id, price_cents, units_total, per_user_limit, starts_at, ends_at, registered_only,
                                queue, queue_seed, queue_difficulty)
       SELECT $1, $2, $3, $4, $5, $6, $7, $8, CASE WHEN $8 = 'raffle' THEN replace(gen_random_uuid()::text, '-', '') END,
              $9
        WHERE $6::timestamptz > now() RETURNING id, units_total
     )
     INSERT INTO flash_sale_stock (sale_id, units_total, available) SELECT id, units_total, units_total FROM s
     RETURNING sale_id AS id`,
    [
      sale.productId,
      sale.priceCents,
      sale.units,
      sale.perUserLimit,
      sale.startsAt,
      sale.endsAt,
      sale.registeredOnly,
      sale.queue,
      sale.queueDifficulty,
    ],
  )
  return rows[0]?.id
}

/** Locks the sale row (so no batch commits meanwhile) and reads what the gate is built from. */
export async function lockSaleForGate(
  tx: Queryable,
  saleId: number,
): Promise<{ sale: StoredSale; usersHolding: { userId: string; units: number }[] } | undefined> {
  const { rows } = await tx.query<StoredSale>(`${SELECT_SALE} WHERE s.id = $1 FOR UPDATE OF st`, [saleId])
  if (!rows[0]) return undefined
  const holders = await tx.query<{ user_id: string; units: number }>(
    'SELECT user_id, units FROM sale_user_units WHERE sale_id = $1 AND units > 0',
    [saleId],
  )
  return {
    sale: rows[0],
    usersHolding: holders.rows.map((row) => ({ userId: row.user_id, units: row.units })),
  }
}

/**
 * Lowers users' units in sales when their orders are cancelled or expire, inside the release's
 * transaction: one statement for the whole release, summed per (sale, user).
 * Concurrency: the rows are locked in (sale, user) order first (the ORDER BY ... FOR UPDATE), the
 * order in which a purchase raises them (src/purchase/sale-orders.repository.ts), so two releasers, or a release and
 * a batch sharing users, cannot deadlock.
 */
export async function releaseUserUnits(
  tx: Queryable,
  holdings: { saleId: number; userId: string; units: number }[],
): Promise<void> {
  if (holdings.length === 0) return
  await tx.query(
    `WITH released AS (
       SELECT sale_id, user_id, sum(units)::int AS units
         FROM unnest($1::bigint[], $2::uuid[], $3::int[]) AS t (sale_id, user_id, units)
        GROUP BY sale_id, user_id),
     locked AS (
       SELECT u.sale_id, u.user_id FROM sale_user_units u JOIN released r USING (sale_id, user_id)
        ORDER BY u.sale_id, u.user_id
          FOR UPDATE OF u)
     UPDATE sale_user_units s SET units = s.units - r.units
       FROM locked l JOIN released r USING (sale_id, user_id)
      WHERE s.sale_id = l.sale_id AND s.user_id = l.user_id`,
    unnestColumns(holdings, (h) => [h.saleId, h.userId, h.units]),
  )
}

export interface SaleAudit {
  unitsTotal: number
  available: number
  reserved: number
  sold: number
  ordersReserved: number
  ordersPaid: number
  unitsInReservedOrders: number
  unitsInPaidOrders: number
  maxUnitsPerUser: number
  perUserLimit: number
}

/** The sale's counters next to what its orders add up to, read from the primary in one snapshot. */
export async function auditSale(db: Queryable, saleId: number): Promise<SaleAudit | undefined> {
  const { rows } = await db.query<SaleAudit>(
    `SELECT s.units_total AS "unitsTotal", st.available, st.reserved, st.sold, s.per_user_limit AS "perUserLimit",
            count(*) FILTER (WHERE o.status = 'reserved')::int AS "ordersReserved",
            count(*) FILTER (WHERE o.status = 'paid')::int AS "ordersPaid",
            COALESCE(sum(i.quantity) FILTER (WHERE o.status = 'reserved'), 0)::int AS "unitsInReservedOrders",
            COALESCE(sum(i.quantity) FILTER (WHERE o.status = 'paid'), 0)::int AS "unitsInPaidOrders",
            COALESCE((SELECT max(per_user.units) FROM (
                SELECT sum(i2.quantity) AS units FROM orders o2 JOIN order_items i2 ON i2.order_id = o2.id
                 WHERE o2.sale_id = s.id AND o2.status IN ('reserved', 'paid') GROUP BY o2.user_id) per_user), 0)::int
              AS "maxUnitsPerUser"
       FROM flash_sales s
       JOIN flash_sale_stock st ON st.sale_id = s.id
       LEFT JOIN orders o ON o.sale_id = s.id
       LEFT JOIN order_items i ON i.order_id = o.id
      WHERE s.id = $1
      GROUP BY s.id, st.sale_id`,
    [saleId],
  )
  return rows[0]
}
