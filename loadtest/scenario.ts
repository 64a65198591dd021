import type { LoadStats } from './load.js'
import type { MetricsDelta } from './prometheus.js'
import type { Verification } from './verify.js'

// What every scenario hands to the verifier and the report.

export interface SaleOutcome {
  saleId: number
  units: number
  perUserLimit: number
  strategy: string
  /** Units in orders after the run: taken, the audit's reserved + sold. */
  taken: number
  /** ms from the start to the first SOLD_OUT answer: the gate (or Postgres) said "none left". */
  firstSoldOutMs: number | null
  /** ms from the start to the last fresh 201: when the last order was durable and its buyer answered. */
  lastOrderMs: number | null
  /** Units in fresh 201 answers per second up to the last of them. */
  durableUnitsPerSecond: number | null
  /** 201 answers: fresh, and replays of an earlier key (Idempotent-Replayed: true). */
  created: number
  replayed: number
  /** The median time of a fresh 201, from sending the purchase to its answer (ms). */
  p50CreatedMs: number | null
}

/** A contention-matrix run: buyers spread over `rows` stock rows that never sell out. */
export interface ContentionOutcome {
  rows: number
  /** Fresh 201s, and how many a second over the run. */
  orders: number
  ordersPerSecond: number
  p50CreatedMs: number | null
}

export interface ScenarioRun {
  scenario: string
  params: Record<string, string | number>
  startedAt: string
  /** The stock strategy the workers ran with (from the audit, or the settings). */
  strategy: string
  load: LoadStats
  sale: SaleOutcome | null
  contention?: ContentionOutcome
  /** Units on offer over time (GET /api/sales/:id every 200 ms), seconds since the start. */
  stock: { t: number; remaining: number }[]
  metrics: MetricsDelta | null
  verification: Verification
}

/** What the verifier needs from a run: the sale it sold, the users it acted as, the orders it was told of. */
export interface RunEvidence {
  /** The sales the run bought from (none for a run without a sale). */
  saleIds: number[]
  userIds: string[]
  /** Every order id a 201 answer carried (fresh or replayed). */
  orderIds: Set<string>
  /** Fresh 201s whose order id another fresh 201 had already carried (must stay 0). */
  duplicateFreshIds: number
  /** Requests whose answers never arrived (cut off at the end, timed out): orders they made are unseen. */
  unanswered: number
  /** Orders of the sales that existed before the run (a case seeded them): nobody answered them in it. */
  ordersBefore?: Set<string>
}
