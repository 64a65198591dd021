import { setTimeout as sleep } from 'node:timers/promises'
import type pg from 'pg'
import type { AdminApi, SaleAudit } from './admin.js'
import type { RunEvidence } from './scenario.js'

// The five invariants (docs/load-testing.md), checked after every load run from the sources of truth: direct SQL on
// the primary, and the sale's audit (which reads the Redis gate). Nothing here trusts the load generator's
// own counts except as the thing to compare against. Each check is one statement, so it sees one snapshot
// even while other traffic runs.

export interface Check {
  invariant: 'I1' | 'I2' | 'I3' | 'I4' | 'I5'
  name: string
  ok: boolean
  detail: string
}

export interface Verification {
  ok: boolean
  checks: Check[]
  /** The sale's audit after the system went quiet, when the run had exactly one sale. */
  audit: SaleAudit | null
}

export interface VerifyOptions {
  db: pg.Pool
  admin: AdminApi
  evidence: RunEvidence
  /** How long to wait for units in flight (admitted, not yet orders) to settle. */
  quietMs?: number
  sweepIntervalMs: number
}

const count = async (db: pg.Pool, sql: string, params: unknown[] = []) =>
  Number((await db.query<{ n: string | number }>(sql, params)).rows[0]?.n ?? 0)

export async function verifyInvariants(options: VerifyOptions): Promise<Verification> {
  const { db, admin, evidence } = options
  const checks: Check[] = []
  const check = (invariant: Check['invariant'], name: string, ok: boolean, detail: string) =>
    checks.push({ invariant, name, ok, detail })

  // I3 first: wait until every admitted unit is an order or back in the gate, then read the audits once.
  const audits = await settledAudits(admin, evidence.saleIds, options.quietMs ?? 5000)
  const audit = audits.length === 1 ? audits[0]! : null

  // I1 No oversell, stock conserved: every stock row, not just the run's.
  const stockRows = await db.query<{ kind: string; negative: number; unconserved: number; rows: number }>(
    `SELECT 'inventory' AS kind, count(*) FILTER (WHERE available < 0)::int AS negative,
            count(*) FILTER (WHERE available + reserved + sold <> on_hand)::int AS unconserved, count(*)::int AS rows
       FROM inventory
     UNION ALL
     SELECT 'flash_sale_stock', count(*) FILTER (WHERE available < 0)::int,
            count(*) FILTER (WHERE available + reserved + sold <> units_total)::int, count(*)::int
       FROM flash_sale_stock`,
  )
  for (const row of stockRows.rows) {
    check(
      'I1',
      `${row.kind}: available >= 0 and available + reserved + sold = total`,
      row.negative === 0 && row.unconserved === 0,
      `${row.rows} rows, ${row.negative} below zero, ${row.unconserved} not conserved`,
    )
  }
  const bucketMismatch = await count(
    db,
    `WITH held AS (
       SELECT o.sale_id, i.product_id,
              COALESCE(sum(i.quantity) FILTER (WHERE o.status = 'reserved'), 0) AS reserved,
              COALESCE(sum(i.quantity) FILTER (WHERE o.status = 'paid'), 0) AS sold
         FROM orders o JOIN order_items i ON i.order_id = o.id
        GROUP BY o.sale_id, i.product_id)
     SELECT (SELECT count(*) FROM inventory v
               LEFT JOIN held h ON h.sale_id IS NULL AND h.product_id = v.product_id
              WHERE v.reserved <> COALESCE(h.reserved, 0) OR v.sold <> COALESCE(h.sold, 0))
          + (SELECT count(*) FROM flash_sale_stock s
               LEFT JOIN (SELECT sale_id, sum(reserved) AS reserved, sum(sold) AS sold FROM held
                           WHERE sale_id IS NOT NULL GROUP BY sale_id) h ON h.sale_id = s.sale_id
              WHERE s.reserved <> COALESCE(h.reserved, 0) OR s.sold <> COALESCE(h.sold, 0)) AS n`,
  )
  check(
    'I1',
    'reserved and sold units equal the units in reserved and paid orders',
    bucketMismatch === 0,
    `${bucketMismatch} stock rows disagree with their orders`,
  )
  if (audit) {
    check(
      'I1',
      `sale ${audit.saleId} audit: no oversell`,
      !audit.oversold && audit.violations.length === 0,
      `initial ${audit.initial} = available ${audit.available} + reserved ${audit.reserved} + sold ${audit.sold}` +
        (audit.violations.length ? `; violations: ${audit.violations.join(', ')}` : ''),
    )
  } else if (audits.length > 1) {
    const bad = audits.filter((a) => a.oversold || a.violations.length > 0)
    check(
      'I1',
      `${audits.length} sales' audits: no oversell`,
      bad.length === 0,
      bad.length === 0
        ? 'no violation'
        : `${bad.length} with a violation, e.g. ${bad[0]!.saleId}: ${bad[0]!.violations.join(', ')}`,
    )
  }

  // I2 Exactly once: the orders the answers named are exactly the order rows the run made.
  const rows = await db.query<{ id: string }>(
    evidence.saleIds.length > 0
      ? 'SELECT id FROM orders WHERE sale_id = ANY($1::bigint[])'
      : 'SELECT id FROM orders WHERE sale_id IS NULL AND user_id = ANY($1::uuid[])',
    [evidence.saleIds.length > 0 ? evidence.saleIds : evidence.userIds],
  )
  const inDb = new Set(rows.rows.map((r) => r.id).filter((id) => !evidence.ordersBefore?.has(id)))
  const answeredMissing = [...evidence.orderIds].filter((id) => !inDb.has(id)).length
  const unseen = [...inDb].filter((id) => !evidence.orderIds.has(id)).length
  check(
    'I2',
    'every order a 201 named exists, and no two fresh 201s named the same order',
    answeredMissing === 0 && evidence.duplicateFreshIds === 0,
    `${evidence.orderIds.size} distinct order ids answered, ${answeredMissing} missing in Postgres, ` +
      `${evidence.duplicateFreshIds} duplicated`,
  )
  check(
    'I2',
    'order rows = distinct orders answered with 2xx',
    unseen <= evidence.unanswered,
    unseen === 0
      ? `${inDb.size} order rows, all answered`
      : `${inDb.size} order rows, ${unseen} not named by any answer` +
          (unseen <= evidence.unanswered
            ? ` (at most the ${evidence.unanswered} requests cut off without an answer)`
            : ` but only ${evidence.unanswered} requests went unanswered: an order nobody was told of`),
  )

  // I3 Postgres is the authority: after the quiet, the gate equals Postgres' available units.
  if (audits.length > 0) {
    const gated = audits.filter((a) => a.drift !== null)
    const drifting = gated.filter((a) => a.drift !== 0 || a.inFlight !== 0)
    if (gated.length === 0) {
      check('I3', 'gate drift 0 after quiet', true, `the ${audits[0]!.strategy} strategy keeps no gate: n/a`)
    } else {
      check(
        'I3',
        'gate drift 0 after quiet, no unit in flight',
        drifting.length === 0,
        audit
          ? `gate ${audit.gate}, in flight ${audit.inFlight}, Postgres available ${audit.available}, drift ${audit.drift}`
          : `${gated.length} sales, ${drifting.length} drifting or with units in flight`,
      )
    }
  }

  // I4 Reservations are bounded: no unpaid order outlives its TTL by more than a sweep interval (+1 s slack).
  const { rows: overdueRows } = await db.query<{ n: number; late: number; ttl: number }>(
    `SELECT count(*)::int AS n,
            extract(epoch FROM now() - min(expires_at))::float8 AS late,
            extract(epoch FROM min(expires_at - created_at))::float8 AS ttl
       FROM orders
      WHERE status = 'reserved' AND expires_at + make_interval(secs => $1::float8 / 1000) < now()`,
    [options.sweepIntervalMs + 1000],
  )
  const overdue = overdueRows[0]!
  check(
    'I4',
    'no reserved order older than expires_at + sweep interval',
    overdue.n === 0,
    overdue.n === 0
      ? 'none overdue'
      : `${overdue.n} reserved orders overdue (the oldest expired ${overdue.late.toFixed(1)} s ago; ` +
          `the shortest TTL among them ${overdue.ttl.toFixed(1)} s): is the jobs process (sweeper) running?`,
  )

  // I5 Integrity and ownership: per-user limits, and amounts from the sale's own price.
  const overLimit = await count(
    db,
    `SELECT count(*) AS n FROM (
       SELECT o.sale_id, o.user_id, sum(i.quantity) AS units
         FROM orders o JOIN order_items i ON i.order_id = o.id
        WHERE o.sale_id IS NOT NULL AND o.status IN ('reserved', 'paid')
        GROUP BY o.sale_id, o.user_id) held
       JOIN flash_sales s ON s.id = held.sale_id
      WHERE held.units > s.per_user_limit`,
  )
  const overAllowance = await count(
    db,
    `SELECT count(*) AS n FROM sale_user_units u JOIN flash_sales s ON s.id = u.sale_id
      WHERE u.units > s.per_user_limit`,
  )
  check(
    'I5',
    'no user holds more than the per-user limit of any sale',
    overLimit === 0 && overAllowance === 0,
    `${overLimit} (sale, user) pairs over the limit in orders, ${overAllowance} in sale_user_units`,
  )
  if (evidence.saleIds.length > 0) {
    const wrongAmounts = await count(
      db,
      `SELECT count(*) AS n FROM orders o JOIN flash_sales s ON s.id = o.sale_id
        WHERE o.sale_id = ANY($1::bigint[]) AND (
          o.total_cents <> (SELECT sum(i.quantity * i.unit_price_cents) FROM order_items i WHERE i.order_id = o.id)
          OR EXISTS (SELECT 1 FROM order_items i WHERE i.order_id = o.id AND i.unit_price_cents <> s.price_cents))`,
      [evidence.saleIds],
    )
    check(
      'I5',
      'order amounts come from the sale price',
      wrongAmounts === 0,
      `${wrongAmounts} orders with another amount`,
    )
  }

  return { ok: checks.every((c) => c.ok), checks, audit }
}

/**
 * The audits of the run's sales once nothing is in flight any more (or `quietMs` passed), read a few
 * at a time: a contention run may have bought from a thousand sales.
 */
async function settledAudits(admin: AdminApi, saleIds: number[], quietMs: number): Promise<SaleAudit[]> {
  const deadline = Date.now() + quietMs
  const settled = (a: SaleAudit) => a.inFlight === null || (a.inFlight === 0 && a.drift === 0)
  for (;;) {
    const audits: SaleAudit[] = []
    for (let i = 0; i < saleIds.length; i += 20) {
      audits.push(...(await Promise.all(saleIds.slice(i, i + 20).map((id) => admin.audit(id)))))
    }
    if (audits.every(settled) || Date.now() > deadline) return audits
    await sleep(200)
  }
}
