import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { createLoadTestUsers, type LoadTestUser } from '../../src/auth/load-test-users.js'
import type { StockStrategyName } from '../../src/config.js'
import { loadConfig } from '../../src/config.js'
import {
  stackHandles,
  stackOptionsFromEnv,
  stackUp,
  stackUrls,
  type StackHandles,
  type StackOptions,
} from '../../scripts/stack/stack.js'
import { httpStatus, waitFor } from '../../scripts/stack/process.js'
import { AdminApi, type Sale } from '../admin.js'
import { createBuyers, type Buyers, type BuyerTally, type FailedKey } from '../buyers.js'
import { answerKey, runLoadAlongside, TIMELINE_STEP_MS, type LoadRequest, type LoadStats } from '../load.js'
import { scrape, sumOf } from '../prometheus.js'
import { noEvidence, percentiles, saleEvidence, watchSale } from '../scenarios/common.js'
import { LOAD_TEST_NGINX_LIMITS, LOAD_TEST_APP_LIMITS, loadTarget, type LoadTarget } from '../target.js'
import { verifyInvariants, type Check, type Verification } from '../verify.js'
import { createFaultLibrary, seededRandom, type FaultEvent, type FaultLibrary } from './fault-library.js'
import { startProber, type ProbeResult } from './read-your-writes.js'

// Runs one fault case: a flash sale through nginx on the campaign's own stack, the case's fault
// injected at a seeded random moment while the load runs, the servers healed, a quiet period, then the
// invariant verifier (I1-I5) and the case's own checks. See docs/reliability.md.

/** The campaign's stack: its own folder and ports (offset 400), so it never disturbs the dev or test stack. */
export const FAULTS_PORT_OFFSET = 400

/** In a case's counters, a label value that stands for the id of the case's sale. */
export const SALE_LABEL = '<sale>'

/**
 * Settings every case runs with, on top of the load-test limits: gate tokens and reservations expire
 * within seconds (so the reconciler and the sweeper act during the run, not after it), and the
 * reconciler and sweeper run often.
 */
export const CAMPAIGN_APP_ENV: Record<string, string> = {
  GATE_TOKEN_TTL_MS: '5000',
  RECONCILE_INTERVAL_MS: '500',
  RESERVATION_TTL_SECONDS: '5',
  SWEEP_INTERVAL_MS: '1000',
  LOG_LEVEL: 'warn',
}

/**
 * The buyers' own timeout: longer than nginx's proxy_read_timeout (10 s), so a request nginx gives up
 * on is seen as nginx's answer, and a request without any answer by then truly hangs.
 */
const CLIENT_TIMEOUT_SECONDS = 15

export interface CaseLoad {
  /** purchase: buyers only; mixed: buyers, catalogue pages and a read-your-writes prober; hot-key: GETs of one product. */
  kind: 'purchase' | 'mixed' | 'hot-key'
  connections: number
  durationSeconds: number
  /** Requests per second over all connections; 0: as fast as answered. */
  rate: number
  users: number
  limit: number
}

const DEFAULT_LOAD: CaseLoad = {
  kind: 'purchase',
  connections: 100,
  durationSeconds: 14,
  rate: 700,
  users: 3000,
  limit: 2,
}

export interface CaseContext {
  options: StackOptions
  handles: StackHandles
  target: LoadTarget
  admin: AdminApi
  load: CaseLoad
  /** The case's sale (none for the hot-key case). */
  sale: Sale | null
  /** The product the hot-key case reads. */
  productId: number
  /** The buyers of the case's sale, with their tokens. */
  users: LoadTestUser[]
  log(message: string): void
}

/** What a case observed, for its own checks and the report. */
export interface Observation {
  load: LoadStats
  events: FaultEvent[]
  failedKeys: FailedKey[]
  /** How long the purchases answered with a 5xx took (ms), or null without any. */
  failedLatency: { p50: number; p99: number; max: number } | null
  probe: ProbeResult | null
  /** Counters of the workers' metrics over the run (cache loads, batches ...). */
  counters: Record<string, number>
  /** The app's PM2 processes before and after the run (pid, restarts), for "every process survives". */
  processes: { before: ProcessInfo[]; after: ProcessInfo[] }
  /** Scratch space the case's inject step fills (what it measured while injecting). */
  notes: Record<string, number | string>
}

export interface ProcessInfo {
  name: string
  pid: number
  instance: number
}

export interface FaultCase {
  name: string
  title: string
  /** What is done to the stack, in one sentence. */
  fault: string
  /** What Stampede promises while and after it happens. */
  promise: string
  /** The honest limits of that promise. */
  limits: string
  strategy?: StockStrategyName
  /** Settings the workers run with for this case, on top of CAMPAIGN_APP_ENV. */
  appEnv?: Record<string, string>
  load?: Partial<CaseLoad>
  /** Runs while the load runs; must leave every server it broke running again before it returns. */
  inject(faults: FaultLibrary, ctx: CaseContext, notes: Observation['notes']): Promise<void>
  check?(ctx: CaseContext, seen: Observation): Promise<Check[]> | Check[]
  /** After the run, send every purchase key of it again and hold each answer against Postgres (resendEveryKey). */
  resendEveryKey?: boolean
  /** Counters (metric name, labels) to measure over the run, for check(); a label SALE_LABEL is the case's sale. */
  counters?: Record<string, { metric: string; labels?: Record<string, string> }>
  /** When the case's sale opens and closes, in seconds from its creation (default: open all run). */
  saleWindow?: { startsInSeconds: number; openSeconds: number }
  /**
   * Changes the stack before the sale is created and the load starts (the clocks case replaces the
   * app's processes); returns how to undo it, which runs once the case is judged, failure or not.
   */
  prepare?(ctx: Pick<CaseContext, 'options' | 'handles' | 'log'>): Promise<() => Promise<void>>
  /** Units of the sale that prepareSale sells before the load (added to the sale's size). */
  heldUnits?: number
  /** Runs once the sale and its buyers exist, before the load (the big-sale case seeds its holders). */
  prepareSale?(ctx: CaseContext, notes: Observation['notes']): Promise<void>
  /** Runs once the case is judged, failure or not (the big-sale case takes its sale out of the way). */
  cleanup?(ctx: CaseContext): Promise<void>
}

export interface CaseResult {
  name: string
  title: string
  seed: number
  strategy: string
  load: CaseLoad
  requests: number
  ok2xx: number
  client4xx: number
  server5xx: number
  /** Requests without an answer: socket errors and timeouts (autocannon counts timeouts as errors). */
  errors: number
  orders: number
  drift: number | null
  answers: Record<string, number>
  latencyMs: LoadStats['latencyMs']
  failedLatency: Observation['failedLatency']
  events: FaultEvent[]
  notes: Record<string, number | string>
  checks: Check[]
  verdict: 'pass' | 'FAIL'
  seconds: number
}

/** The 5xx of each whole second of the run, from the timeline's steps (each an answers-per-second rate). */
function failedPerSecond(timeline: LoadStats['timeline']): string {
  const stepsPerSecond = 1000 / TIMELINE_STEP_MS
  const seconds: number[] = []
  for (let i = 0; i < timeline.length; i += stepsPerSecond) {
    const steps = timeline.slice(i, i + stepsPerSecond)
    seconds.push(Math.round(steps.reduce((sum, s) => sum + s.failed, 0) / stepsPerSecond))
  }
  return seconds.join(' ')
}

/** The result of a case that could not run to the end: nothing measured, one failed check that says why. */
export function crashedCase(name: string, title: string, seed: number, why: string): CaseResult {
  return {
    name,
    title,
    seed,
    strategy: 'n/a',
    load: { kind: 'purchase', connections: 0, durationSeconds: 0, rate: 0, users: 0, limit: 0 },
    requests: 0,
    ok2xx: 0,
    client4xx: 0,
    server5xx: 0,
    errors: 0,
    orders: 0,
    drift: null,
    answers: {},
    latencyMs: { p50: 0, p90: 0, p99: 0, max: 0, mean: 0 },
    failedLatency: null,
    events: [],
    notes: {},
    checks: [{ invariant: 'I3', name: 'the case ran to the end', ok: false, detail: why }],
    verdict: 'FAIL',
    seconds: 0,
  }
}

export function campaignStackOptions(env: NodeJS.ProcessEnv, fc: FaultCase): StackOptions {
  const config = loadConfig(env)
  return stackOptionsFromEnv(
    { ...LOAD_TEST_NGINX_LIMITS, ...env },
    {
      name: 'faults',
      dir: path.join(config.STACK_DIR, 'faults'),
      portOffset: FAULTS_PORT_OFFSET,
      services: { prometheus: false },
      appEnv: {
        ...LOAD_TEST_APP_LIMITS,
        ...CAMPAIGN_APP_ENV,
        STOCK_STRATEGY: fc.strategy ?? 'redis-gate',
        ...fc.appEnv,
      },
    },
  )
}

async function appProcesses(handles: StackHandles): Promise<ProcessInfo[]> {
  return (await handles.appProcesses()).map(({ name, pid, instance }) => ({ name, pid, instance }))
}

/**
 * Waits until the stack is whole again: every worker ready (primary, replica and Redis answer it) and
 * nginx serving both its public and admin side, after a fault healed.
 */
async function waitForHealthy(options: StackOptions, timeoutMs = 60_000): Promise<void> {
  const urls = stackUrls(options)
  const probes = [
    ...urls.workers.map((url) => `${url}/health/ready`),
    `${urls.nginxUrl}/health/live`,
    `${urls.nginxAdminUrl}/health/live`,
    // The jobs process (sweeper, reconciler) serves its own metrics: it answers once it runs again.
    `http://127.0.0.1:${options.ports.jobsMetrics}/metrics`,
  ]
  await waitFor(
    'the stack to be healthy again',
    async () => (await Promise.all(probes.map((url) => httpStatus(url)))).every((s) => s === 200),
    timeoutMs,
  )
}

export async function runCase(
  fc: FaultCase,
  seed: number,
  env: NodeJS.ProcessEnv,
  log: (message: string) => void,
): Promise<CaseResult> {
  const started = Date.now()
  const load = { ...DEFAULT_LOAD, ...fc.load }
  const options = campaignStackOptions(env, fc)
  await stackUp(options, (message) => log(`stack: ${message}`))
  await waitForHealthy(options)
  const handles = await stackHandles(options)
  const target = loadTarget(options)
  const undo = fc.prepare ? await fc.prepare({ options, handles, log }) : undefined
  try {
    const admin = await AdminApi.connect(target)
    const productId = await admin.loadTestProduct(target.db)
    // Sized so that units remain however fast the run goes: each request buys at most one unit.
    const units = Math.max(1000, load.rate * load.durationSeconds) + (fc.heldUnits ?? 0)
    const sale =
      load.kind === 'hot-key'
        ? null
        : await admin.createSale({
            productId,
            units,
            perUserLimit: load.limit,
            priceCents: 999,
            ...(fc.saleWindow ?? { openSeconds: load.durationSeconds + 600 }),
          })
    const users =
      load.kind === 'hot-key' ? [] : await createLoadTestUsers(target.db, target.config, load.users)
    const ctx: CaseContext = { options, handles, target, admin, load, sale, productId, users, log }
    log(
      sale
        ? `sale ${sale.id}: ${units} units, ${users.length} buyers, ${load.connections} connections at ${load.rate}/s for ${load.durationSeconds} s`
        : `product ${productId}: ${load.connections} connections for ${load.durationSeconds} s`,
    )
    const notes: Observation['notes'] = {}
    let ordersBefore: Set<string> | undefined
    if (fc.prepareSale && sale) {
      await fc.prepareSale(ctx, notes)
      const { rows } = await target.db.query<{ id: string }>('SELECT id FROM orders WHERE sale_id = $1', [
        sale.id,
      ])
      ordersBefore = new Set(rows.map((r) => r.id))
    }
    try {
      const observed = await observe(fc, ctx, seed, users, notes)
      return await judge(fc, ctx, seed, { ...observed, ordersBefore }, users, started)
    } finally {
      await fc
        .cleanup?.(ctx)
        .catch((error: unknown) => log(`could not clean up after the case: ${String(error)}`))
    }
  } finally {
    // A stack left half-undone is repaired by the next case's stackUp; the case's verdict stands.
    await undo?.().catch((error: unknown) => log(`could not undo the case's preparation: ${String(error)}`))
    await target.close()
  }
}

export interface Observed extends Observation {
  buyers: Buyers | null
  /** Orders of the sale written before the load (prepareSale), which no answer of the run names. */
  ordersBefore?: Set<string>
}

async function observe(
  fc: FaultCase,
  ctx: CaseContext,
  seed: number,
  users: LoadTestUser[],
  notes: Observation['notes'],
): Promise<Observed> {
  const { target, sale, load } = ctx
  let startedAt = Date.now()
  const stock = sale ? watchSale(target, sale.id, () => startedAt) : null
  const buyers = sale
    ? createBuyers(users, {
        replayShare: 0.05,
        greedyShare: 0.05,
        units: sale.unitsTotal,
        limit: load.limit,
        retryFailed: true,
      })
    : null
  const faults = createFaultLibrary({
    options: ctx.options,
    handles: ctx.handles,
    random: seededRandom(seed),
    elapsedMs: () => Date.now() - startedAt,
    remaining: () => stock?.remaining(),
    log: ctx.log,
  })
  const prober = load.kind === 'mixed' && sale ? await startProber(ctx, sale) : null
  if (load.kind === 'hot-key') {
    // Warm: a restock in an earlier case evicted the product, and that first load is not an expiry.
    for (let i = 0; i < 4; i++) await fetch(`${target.nginxUrl}/api/products/${ctx.productId}`)
  }
  const before = await appProcesses(ctx.handles)
  const countersBefore = await readCounters(fc, target, ctx.sale?.id)

  // The fault runs beside the load; its failure must not leave the load (or a paused server) behind.
  const [loadResult, injectResult] = await runLoadAlongside(
    {
      title: fc.name,
      url: target.nginxUrl,
      connections: load.connections,
      durationSeconds: load.durationSeconds,
      ...(load.rate > 0 ? { overallRate: load.rate } : {}),
      timeoutSeconds: CLIENT_TIMEOUT_SECONDS,
      requests: requestsFor(ctx, buyers),
      onStart: (at) => {
        startedAt = at
        buyers?.start(at)
      },
      progressNote: () =>
        sale ? `${stock?.remaining() ?? sale.unitsTotal}/${sale.unitsTotal} units left` : '',
    },
    () => fc.inject(faults, ctx, notes),
  )
  faults.resumeAll()
  stock?.stop()
  const probe = prober ? await prober.stop() : null
  if (injectResult.status === 'rejected') throw injectResult.reason
  if (loadResult.status === 'rejected') throw loadResult.reason
  const { errors, errorSamples } = loadResult.value
  if (errors > 0) {
    const samples = errorSamples.map((e) => `${e.error} at ${(e.atMs / 1000).toFixed(1)} s`)
    ctx.log(`${errors} requests got no answer: ${samples.join(', ')}`)
  }
  await waitForHealthy(ctx.options)
  const after = await appProcesses(ctx.handles)
  const countersAfter = await readCounters(fc, target, ctx.sale?.id)
  const counters = Object.fromEntries(
    Object.keys(countersAfter).map((k) => [k, countersAfter[k]! - (countersBefore[k] ?? 0)]),
  )
  return {
    load: loadResult.value,
    events: faults.events,
    failedKeys: buyers ? [...buyers.failedKeys.values()] : [],
    failedLatency: percentiles(buyers?.tally.failedLatencyMs ?? []),
    probe,
    counters,
    processes: { before, after },
    notes,
    buyers,
  }
}

/** Waits until the sale's gate has no unit in flight and no drift, or `timeoutMs`; returns how long (ms). */
async function waitForQuietGate(admin: AdminApi, saleId: number, timeoutMs: number): Promise<number> {
  const started = Date.now()
  for (;;) {
    const audit = await admin.audit(saleId)
    const quiet = audit.inFlight === null || (audit.inFlight === 0 && audit.drift === 0)
    if (quiet || Date.now() - started > timeoutMs) return Date.now() - started
    await sleep(200)
  }
}

/**
 * A sweeper that was away (or slowed down by the fault) has a backlog of reservations past their TTL;
 * I4 is checked once it has worked through them. Returns how long that took (ms), which the report
 * shows: a backlog that never drains fails I4 in the verifier after 30 s.
 */
async function waitForSweeper(ctx: JudgedContext): Promise<number> {
  const started = Date.now()
  const { SWEEP_INTERVAL_MS } = ctx.target.config
  for (;;) {
    const { rows } = await ctx.target.db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM orders
        WHERE status = 'reserved' AND expires_at + make_interval(secs => $1::float8 / 1000) < now()`,
      [SWEEP_INTERVAL_MS + 1000],
    )
    if (rows[0]!.n === 0 || Date.now() - started > 30_000) return Date.now() - started
    await sleep(200)
  }
}

/** How many answers have a key starting with `prefix`: '5' for every 5xx, '503 SOLD_OUT'... one code. */
export function answersStartingWith(answers: Record<string, number>, prefix: string): number {
  return Object.entries(answers)
    .filter(([key]) => key.startsWith(prefix))
    .reduce((sum, [, n]) => sum + n, 0)
}

async function readCounters(
  fc: FaultCase,
  target: LoadTarget,
  saleId: number | undefined,
): Promise<Record<string, number>> {
  if (!fc.counters) return {}
  // A label value SALE_LABEL stands for the case's sale.
  const labelsOf = (labels: Record<string, string> | undefined) =>
    labels &&
    Object.fromEntries(Object.entries(labels).map(([k, v]) => [k, v === SALE_LABEL ? String(saleId) : v]))
  // Each process's own endpoint (the workers', and the jobs process's own registry, not its merged view
  // of the workers): a counter of a process that restarts during the case starts again from 0.
  const jobs = target.metrics.merged.replace(/\/merged$/, '')
  const samples = (await scrape({ merged: '', workers: [...target.metrics.workers, jobs] }))?.samples ?? []
  return Object.fromEntries(
    Object.entries(fc.counters).map(([name, c]) => [name, sumOf(samples, c.metric, labelsOf(c.labels))]),
  )
}

function requestsFor(ctx: CaseContext, buyers: Buyers | null): LoadRequest[] {
  const { sale, productId } = ctx
  if (!sale || !buyers) return [{ method: 'GET', path: `/api/products/${productId}` }]
  const purchase: LoadRequest = {
    setupRequest: (request, context) => buyers.next(request, context, sale.id),
    onResponse: (status, body, context, headers) => buyers.record(status, body, headers, context),
  }
  if (ctx.load.kind === 'purchase') return [purchase]
  // Catalogue pages are not cached: every one is a read on the replica while it is in use.
  return [purchase, { method: 'GET', path: '/api/products?limit=20' }]
}

/**
 * For every key that got a 5xx and was sent again: if Postgres holds an order for the key, the buyer's
 * last answer for it must be that order (the retry found it); an order nobody was told of is a broken
 * promise. Keys whose last answer is still a 5xx (the run ended first) are counted apart.
 */
export async function checkRetriedKeys(target: LoadTarget, keys: FailedKey[]): Promise<Check> {
  const retried = keys.filter((k) => k.answers.length > 1)
  const { rows } = await target.db.query<{ user_id: string; key: string; order_id: string | null }>(
    `SELECT user_id, key, CASE WHEN response_status = 201 THEN response_body->>'id' END AS order_id
       FROM idempotency_keys
      WHERE (user_id, key) IN (SELECT * FROM unnest($1::uuid[], $2::text[]))`,
    [retried.map((k) => k.userId), retried.map((k) => k.key)],
  )
  const stored = new Map(rows.map((r) => [`${r.user_id}/${r.key}`, r.order_id]))
  let recovered = 0
  let fresh = 0
  let broken = 0
  let pending = 0
  const examples: string[] = []
  for (const k of retried) {
    const last = k.answers.at(-1)!
    const orderId = stored.get(`${k.userId}/${k.key}`)
    // 409 IDEMPOTENCY_KEY_IN_USE: the first attempt still holds the key (its worker died holding the
    // lock, or Redis could not hear that it ended); the lock's TTL frees it.
    if (last.startsWith('5') || last === '409 IDEMPOTENCY_KEY_IN_USE') pending++
    else if (orderId && last === `201 ${orderId} replayed`) recovered++
    else if (orderId && last !== `201 ${orderId}`) {
      broken++
      if (examples.length < 3) examples.push(`${k.answers.join(' > ')} (order ${orderId})`)
    } else fresh++
  }
  return {
    invariant: 'I2',
    name: 'a buyer who retried after a 5xx with the same key got the order if it committed',
    ok: broken === 0,
    detail:
      `${keys.length} keys got a 5xx, ${retried.length} were sent again: ${recovered} got the order an ` +
      `earlier attempt had committed (a replay), ${fresh} ran afresh, ${broken} were told something else ` +
      `although an order exists` +
      (pending ? `, ${pending} still failing or in use when the run ended` : '') +
      (examples.length ? `; e.g. ${examples.join('; ')}` : ''),
  }
}

/**
 * Redis may have forgotten any key of the run (a lost second of AOF, a failover, a lapsed lock): every
 * key whose order Postgres saved (in idempotency_keys, its order in orders) is sent again, twice, and
 * must answer that order both times (201, replayed), never a refusal (sold out, the per-user limit) or
 * a second order: a wrong answer the first resend stored under the key would be replayed by the second.
 * Keys without a saved order are not sent: their purchase may rightly run now.
 */
export async function resendEveryKey(target: LoadTarget, buyers: Buyers, saleId: number): Promise<Check> {
  const keys = [...buyers.keysSent()]
  const { rows } = await target.db.query<{ user_id: string; key: string; order_id: string }>(
    // From the keys sent, one primary-key lookup each (a row-value IN over thousands of pairs may be
    // planned as a scan of the whole table).
    `SELECT k.user_id, k.key, o.id AS order_id
       FROM unnest($1::uuid[], $2::text[]) AS sent (user_id, key)
       JOIN idempotency_keys k ON k.user_id = sent.user_id AND k.key = sent.key
       JOIN orders o ON o.id = (k.response_body->>'id')::uuid AND o.user_id = k.user_id
      WHERE k.response_status = 201`,
    [keys.map((k) => k.userId), keys.map((k) => k.key)],
  )
  const saved = new Map(rows.map((r) => [`${r.user_id}/${r.key}`, r.order_id]))
  const withOrder = keys.filter((k) => saved.has(`${k.userId}/${k.key}`))
  const examples: string[] = []
  let replayed = 0
  let wrong = 0
  // A few at a time, so the check measures the answers, not nginx's connection limits.
  for (let i = 0; i < 2 * withOrder.length; i += 20) {
    await Promise.all(
      [...withOrder, ...withOrder].slice(i, i + 20).map(async (k) => {
        const response = await fetch(`${target.nginxUrl}/api/sales/${saleId}/purchase`, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            authorization: `Bearer ${k.token}`,
            'idempotency-key': k.key,
          },
          body: '{"quantity":1}',
        })
        const body = await response.text()
        const orderId = saved.get(`${k.userId}/${k.key}`)!
        const ok =
          response.status === 201 &&
          response.headers.get('idempotent-replayed') === 'true' &&
          (JSON.parse(body) as { id: string }).id === orderId
        if (ok) {
          replayed++
          return
        }
        wrong++
        if (examples.length < 5) examples.push(`${answerKey(response.status, body)} for order ${orderId}`)
      }),
    )
  }
  return {
    invariant: 'I2',
    name: 'every key whose order Postgres saved, sent again after the run, answers that order',
    ok: wrong === 0 && withOrder.length > 0,
    detail:
      `${keys.length} keys sent in the run, ${withOrder.length} with a saved order, each sent twice: ` +
      `${replayed} answers replayed it, ${wrong} answered otherwise` +
      (examples.length ? ` (e.g. ${examples.join('; ')})` : ''),
  }
}

/**
 * A buyer told 201 holds a reservation with time left to pay: an order that had expired before its
 * answer arrived is one the sweeper may take back at once (and that I4 counts overdue from its birth).
 */
export function noReservationExpiredOnArrival(tally: BuyerTally): Check {
  const least = tally.leastRemainingMs
  return {
    invariant: 'I4',
    name: 'no buyer is given a reservation that has already expired',
    ok: tally.expiredOnArrival === 0,
    detail:
      `${tally.expiredOnArrival} of ${tally.created} fresh 201s had expired when they arrived` +
      (least === null ? '' : `; the least time left on arrival was ${(least / 1000).toFixed(1)} s`),
  }
}

/** What judging a case needs of its context: the single-host campaign's and the HA profile's alike. */
export type JudgedContext = Pick<CaseContext, 'target' | 'admin' | 'sale' | 'load' | 'log'>

/** What judging needs of a case. */
export interface JudgedCase<C extends JudgedContext> {
  name: string
  title: string
  strategy?: StockStrategyName
  check?(ctx: C, seen: Observation): Promise<Check[]> | Check[]
  /** After the run, send every purchase key of it again and hold each answer against Postgres (resendEveryKey). */
  resendEveryKey?: boolean
}

/**
 * Lets the system go quiet, runs the invariant verifier, and adds the checks every case shares (no 500,
 * no hung request, recovered by the end) and the case's own.
 */
export async function judge<C extends JudgedContext>(
  fc: JudgedCase<C>,
  ctx: C,
  seed: number,
  seen: Observed,
  users: LoadTestUser[],
  started: number,
): Promise<CaseResult> {
  const { target, admin, sale } = ctx
  const config = target.config
  ctx.log('settling, then verifying the invariants ...')
  // Quiet first: tokens of a dead worker reach their deadline and the reconciler settles them; then the
  // sweeper gets through the reservations that expired meanwhile, and I4 is checked at that moment.
  const quietMs = config.GATE_TOKEN_TTL_MS + 4 * config.RECONCILE_INTERVAL_MS + 5000
  if (sale) seen.notes.quietAfterMs = await waitForQuietGate(admin, sale.id, quietMs)
  seen.notes.sweepBacklogDrainedMs = await waitForSweeper(ctx)
  const evidence = {
    ...(sale && seen.buyers ? saleEvidence([sale.id], users, seen.buyers, seen.load) : noEvidence(seen.load)),
    ordersBefore: seen.ordersBefore,
  }
  const verification: Verification = await verifyInvariants({
    db: target.db,
    admin,
    evidence,
    quietMs,
    sweepIntervalMs: config.SWEEP_INTERVAL_MS,
  })
  const load = seen.load
  const checks: Check[] = [...verification.checks]
  const count = (prefix: string) => answersStartingWith(load.answers, prefix)
  const internal = count('500')
  checks.push({
    invariant: 'I5',
    name: 'no answer is a 500: an outage is a 502/503 with a reason, never an internal error',
    ok: internal === 0,
    detail: `${internal} answers with status 500`,
  })
  checks.push({
    invariant: 'I3',
    name: `no request hangs: every request got an answer within the client timeout (${CLIENT_TIMEOUT_SECONDS} s)`,
    ok: load.timeouts === 0,
    detail: `${load.timeouts} timeouts, slowest answer ${load.latencyMs.max} ms`,
  })
  const tail = load.timeline.slice(-8)
  const tailOk = tail.reduce((sum, s) => sum + s.ok, 0)
  const tailFailed = tail.reduce((sum, s) => sum + s.failed, 0)
  checks.push({
    invariant: 'I3',
    name: 'recovered: the last 2 s of the run answered 2xx and no 5xx',
    ok: tailOk > 0 && tailFailed === 0,
    detail:
      `${Math.round(tailOk / 4)} 2xx and ${Math.round(tailFailed / 4)} 5xx in the last 2 s` +
      (tailFailed === 0 ? '' : `; 5xx per second, second by second: ${failedPerSecond(load.timeline)}`),
  })
  if (seen.buyers) {
    checks.push(noReservationExpiredOnArrival(seen.buyers.tally))
    const least = seen.buyers.tally.leastRemainingMs
    if (least !== null) seen.notes.leastTimeLeftOn201Ms = Math.round(least)
  }
  if (seen.failedKeys.length > 0) checks.push(await checkRetriedKeys(target, seen.failedKeys))
  if (fc.check) checks.push(...(await fc.check(ctx, seen)))
  if (fc.resendEveryKey && seen.buyers && sale)
    checks.push(await resendEveryKey(target, seen.buyers, sale.id))

  const audit = verification.audit
  const orders = sale
    ? Number(
        (
          await target.db.query<{ n: number }>('SELECT count(*)::int AS n FROM orders WHERE sale_id = $1', [
            sale.id,
          ])
        ).rows[0]!.n,
      )
    : 0
  const errors = load.errors
  return {
    name: fc.name,
    title: fc.title,
    seed,
    strategy: verification.audit?.strategy ?? fc.strategy ?? 'redis-gate',
    load: ctx.load,
    requests: load.sent,
    ok2xx: count('2'),
    client4xx: count('4'),
    server5xx: count('5'),
    errors,
    orders,
    drift: audit?.drift ?? null,
    answers: load.answers,
    latencyMs: load.latencyMs,
    failedLatency: seen.failedLatency,
    events: seen.events,
    notes: { ...seen.notes, ...seen.counters },
    checks,
    verdict: checks.every((c) => c.ok) ? 'pass' : 'FAIL',
    seconds: Math.round((Date.now() - started) / 1000),
  }
}
