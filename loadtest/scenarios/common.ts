import { createLoadTestUsers, type LoadTestUser } from '../../src/auth/load-test-users.js'
import type { AdminApi, Sale } from '../admin.js'
import { createBuyers, type BuyerOptions, type Buyers } from '../buyers.js'
import { runLoad, sampleEvery, type LoadOptions, type LoadStats } from '../load.js'
import { metricsDelta, scrape, type MetricsDelta } from '../prometheus.js'
import type { RunEvidence, SaleOutcome, ScenarioRun } from '../scenario.js'
import type { LoadTarget } from '../target.js'
import { verifyInvariants } from '../verify.js'

// What the scenarios share: the context they run in, the metrics before/after, the stock sampler, and
// the ending every scenario has (verify the invariants, assemble the run for the report).

/** How hard and how long every scenario pushes: autocannon connections, seconds. */
export interface LoadShape {
  connections: number
  duration: number
}

export interface ScenarioContext {
  target: LoadTarget
  admin: AdminApi
  log(message: string): void
}

/** Runs the load between two scrapes of the app's counters; null metrics when no endpoint answers. */
export async function withMetrics<T>(
  target: LoadTarget,
  load: () => Promise<T>,
): Promise<{ value: T; metrics: MetricsDelta | null }> {
  const before = await scrape(target.metrics)
  const value = await load()
  const after = await scrape(target.metrics)
  return { value, metrics: metricsDelta(before, after) }
}

/** Samples the units on offer every 200 ms, the way a storefront sees them (GET /api/sales/:id). */
export function watchSale(target: LoadTarget, saleId: number, since: () => number) {
  let remaining: number | undefined
  const sampler = sampleEvery(200, since, async () => {
    const response = await fetch(`${target.nginxUrl}/api/sales/${saleId}`, {
      signal: AbortSignal.timeout(1000),
    })
    if (!response.ok) return undefined
    remaining = ((await response.json()) as Sale).remaining
    return remaining
  })
  return {
    remaining: () => remaining,
    stop: () => sampler.stop(),
    points: () => sampler.points.map((p) => ({ t: p.t, remaining: p.value })),
  }
}

export function saleOutcome(sale: Sale, buyers: Buyers, strategy: string, taken: number): SaleOutcome {
  const { tally } = buyers
  return {
    saleId: sale.id,
    units: sale.unitsTotal,
    perUserLimit: sale.perUserLimit,
    strategy,
    taken,
    firstSoldOutMs: tally.firstSoldOutMs,
    lastOrderMs: tally.lastOrderMs,
    durableUnitsPerSecond:
      tally.lastOrderMs && tally.lastOrderMs > 0 ? tally.unitsBought / (tally.lastOrderMs / 1000) : null,
    created: tally.created,
    replayed: tally.replayed,
    p50CreatedMs: median(tally.createdLatencyMs),
  }
}

/** The p50, p99 and largest of `values`, rounded to whole units; null for none. */
export function percentiles(values: number[]): { p50: number; p99: number; max: number } | null {
  if (values.length === 0) return null
  const sorted = [...values].sort((a, b) => a - b)
  const at = (q: number) => Math.round(sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!)
  return { p50: at(0.5), p99: at(0.99), max: Math.round(sorted.at(-1)!) }
}

export function median(values: number[]): number | null {
  if (values.length === 0) return null
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]!
}

export async function finishRun(
  ctx: ScenarioContext,
  run: Omit<ScenarioRun, 'verification' | 'strategy' | 'sale' | 'contention'> & {
    evidence: RunEvidence
    sale?: { view: Sale; buyers: Buyers }
    contention?: { rows: number; buyers: Buyers }
  },
): Promise<ScenarioRun> {
  ctx.log('verifying the invariants ...')
  const verification = await verifyInvariants({
    db: ctx.target.db,
    admin: ctx.admin,
    evidence: run.evidence,
    sweepIntervalMs: ctx.target.config.SWEEP_INTERVAL_MS,
  })
  const strategy = verification.audit?.strategy ?? ctx.target.config.STOCK_STRATEGY
  const taken = verification.audit ? verification.audit.reserved + verification.audit.sold : 0
  return {
    scenario: run.scenario,
    params: run.params,
    startedAt: run.startedAt,
    strategy,
    load: run.load,
    sale: run.sale ? saleOutcome(run.sale.view, run.sale.buyers, strategy, taken) : null,
    ...(run.contention && {
      contention: {
        rows: run.contention.rows,
        orders: run.contention.buyers.tally.created,
        ordersPerSecond: run.contention.buyers.tally.created / run.load.durationSeconds,
        p50CreatedMs: median(run.contention.buyers.tally.createdLatencyMs),
      },
    }),
    stock: run.stock,
    metrics: run.metrics,
    verification,
  }
}

/** The ending of a scenario that sells nothing (the ceiling, browsing): verify, report. */
export function finishLoadOnly(
  ctx: ScenarioContext,
  scenario: string,
  params: object,
  measured: { value: LoadStats; metrics: MetricsDelta | null },
): Promise<ScenarioRun> {
  const load = measured.value
  return finishRun(ctx, {
    scenario,
    params: { ...params },
    startedAt: load.startedAt,
    load,
    stock: [],
    metrics: measured.metrics,
    evidence: noEvidence(load),
  })
}

/** A flash sale of its own for a scenario: a fresh sale, `users` buyers with tokens, and how they behave. */
export async function openSale(
  ctx: ScenarioContext,
  params: { units: number; users: number; limit: number; duration: number },
  behaviour: Pick<BuyerOptions, 'replayShare' | 'greedyShare'>,
): Promise<{ sale: Sale; users: LoadTestUser[]; buyers: Buyers }> {
  const { target, admin } = ctx
  const productId = await admin.loadTestProduct(target.db)
  const sale = await admin.createSale({
    productId,
    units: params.units,
    perUserLimit: params.limit,
    priceCents: 999,
    openSeconds: Math.max(600, params.duration + 60),
  })
  const users = await createLoadTestUsers(target.db, target.config, params.users)
  ctx.log(`sale ${sale.id}: ${params.units} units, limit ${params.limit} per user; ${users.length} buyers`)
  const buyers = createBuyers(users, { ...behaviour, units: params.units, limit: params.limit })
  return { sale, users, buyers }
}

/**
 * Runs a load against an open sale while sampling its count (the buyers' clock starts with the load),
 * then verifies and reports with the sale's evidence.
 */
export async function runSaleScenario(
  ctx: ScenarioContext,
  scenario: string,
  params: object,
  opened: { sale: Sale; users: LoadTestUser[]; buyers: Buyers },
  load: Omit<LoadOptions, 'title' | 'url' | 'onStart' | 'progressNote'>,
): Promise<ScenarioRun> {
  const { sale, users, buyers } = opened
  let startedAt = Date.now()
  const stock = watchSale(ctx.target, sale.id, () => startedAt)
  const { value: stats, metrics } = await withMetrics(ctx.target, () =>
    runLoad({
      ...load,
      title: scenario,
      url: ctx.target.nginxUrl,
      onStart: (at) => {
        startedAt = at
        buyers.start(at)
      },
      progressNote: () => `${stock.remaining() ?? sale.unitsTotal}/${sale.unitsTotal} units left`,
    }),
  ).finally(() => stock.stop())
  return finishRun(ctx, {
    scenario,
    params: { ...params },
    startedAt: stats.startedAt,
    load: stats,
    stock: stock.points(),
    metrics,
    sale: { view: sale, buyers },
    evidence: saleEvidence([sale.id], users, buyers, stats),
  })
}

export const noEvidence = (load: LoadStats): RunEvidence => ({
  saleIds: [],
  userIds: [],
  orderIds: new Set(),
  duplicateFreshIds: 0,
  unanswered: load.unanswered + load.errors,
})

/** What the verifier needs from a flash-sale run: the sale, its buyers, and the orders they were told of. */
export const saleEvidence = (
  saleIds: number[],
  users: { id: string }[],
  buyers: Buyers,
  load: LoadStats,
): RunEvidence => ({
  saleIds,
  userIds: users.map((u) => u.id),
  orderIds: buyers.tally.orderIds,
  duplicateFreshIds: buyers.tally.duplicateFreshIds,
  unanswered: load.unanswered + load.errors,
})
