import type { MetricsJson } from '../merged-metrics.js'
import type { SaleNumbers } from '../sales/sale-events.js'
import {
  bucketsOf,
  createCounterDeltas,
  quantileFromBuckets,
  seriesOf,
  total,
  totalsBy,
  type Series,
} from './metric-deltas.js'

/** A sale as the dashboard draws it: the live numbers of the sale events, with its name and size. */
export interface DashboardSale extends SaleNumbers {
  productName: string
  unitsTotal: number
}

/** What the dashboard shows for one interval (about a second). Rates are per second. */
export interface DashboardSample {
  /** End of the interval, epoch milliseconds. */
  at: number
  /** Length of the interval in seconds. */
  seconds: number
  answers: {
    perSecond: number
    /** Answers counted since the feed started (an integer). */
    total: number
    /** Per second, by outcome: "2xx", "<status> <code>" for each 4xx code ("409 SOLD_OUT"), "5xx". */
    byOutcome: Record<string, number>
  }
  /** Of every answer but the long-lived event streams; null when nothing was answered. */
  latency: { p50Ms: number | null; p99Ms: number | null }
  /** Per stock strategy: lost races and the retries they cost, per second. */
  stock: Record<string, { conflictsPerSecond: number; retriesPerSecond: number }>
  /** Batch transactions of the redis-gate strategy; meanSize is null when none ran. */
  batches: { perSecond: number; meanSize: number | null }
  /** Share of cache lookups that did not reach the database; null when there were none. */
  cache: { lookupsPerSecond: number; hitRatio: number | null }
  /** The worst replica lag any worker measured; null while no worker could measure it. */
  replicaLagMs: number | null
  sales: DashboardSale[]
}

const WATCHED = new Set([
  'http_request_duration_seconds',
  'http_errors_total',
  'stock_conflicts_total',
  'stock_retries',
  'order_batch_size',
  'cache_requests_total',
])
const REPLICA_LAG = new Set(['db_replica_lag_seconds'])
// Its "duration" is how long a shopper kept the page open, not how fast the server answered.
const LONG_LIVED_ROUTES = new Set(['/api/sales/:id/events'])

const perSecond = (value: number, seconds: number) => Math.round((value / seconds) * 100) / 100

/** Builds one sample from the counter increases of one interval. Pure, so a unit test can feed it. */
export function summarize(input: {
  at: number
  seconds: number
  increases: Series[]
  answersSoFar: number
  replicaLagSeconds: number[]
  sales: DashboardSale[]
}): DashboardSample {
  const { increases: inc, seconds } = input
  const status = (labels: Record<string, string>) => Number(labels.status_code)
  const answered = total(inc, 'http_request_duration_seconds_count')
  const byOutcome: Record<string, number> = {}
  const ok = total(inc, 'http_request_duration_seconds_count', (l) => status(l) < 400)
  const failed = total(inc, 'http_request_duration_seconds_count', (l) => status(l) >= 500)
  if (ok > 0) byOutcome['2xx'] = perSecond(ok, seconds)
  const clientErrors = totalsBy(inc, 'http_errors_total', (l) =>
    status(l) >= 400 && status(l) < 500 ? `${l.status_code} ${l.code}` : undefined,
  )
  for (const [outcome, count] of Object.entries(clientErrors)) byOutcome[outcome] = perSecond(count, seconds)
  if (failed > 0) byOutcome['5xx'] = perSecond(failed, seconds)

  const latencyBuckets = bucketsOf(
    inc,
    'http_request_duration_seconds_bucket',
    (l) => !LONG_LIVED_ROUTES.has(l.route ?? ''),
  )
  const ms = (q: number) => {
    const seconds = quantileFromBuckets(q, latencyBuckets)
    return seconds === null ? null : Math.round(seconds * 10_000) / 10
  }

  const conflicts = totalsBy(inc, 'stock_conflicts_total', (l) => l.strategy)
  const retries = totalsBy(inc, 'stock_retries_sum', (l) => l.strategy)
  const stock: DashboardSample['stock'] = {}
  for (const strategy of new Set([...Object.keys(conflicts), ...Object.keys(retries)])) {
    stock[strategy] = {
      conflictsPerSecond: perSecond(conflicts[strategy] ?? 0, seconds),
      retriesPerSecond: perSecond(retries[strategy] ?? 0, seconds),
    }
  }

  const batches = total(inc, 'order_batch_size_count')
  const batchedOrders = total(inc, 'order_batch_size_sum')
  // Every lookup starts in memory (l1); only those no layer could answer reach the loader (db).
  const lookups = total(inc, 'cache_requests_total', (l) => l.layer === 'l1')
  const loads = total(inc, 'cache_requests_total', (l) => l.layer === 'db')
  const lag = input.replicaLagSeconds

  return {
    at: input.at,
    seconds: Math.round(seconds * 1000) / 1000,
    answers: {
      perSecond: perSecond(answered, seconds),
      total: input.answersSoFar + answered,
      byOutcome,
    },
    latency: { p50Ms: ms(0.5), p99Ms: ms(0.99) },
    stock,
    batches: {
      perSecond: perSecond(batches, seconds),
      meanSize: batches > 0 ? Math.round((batchedOrders / batches) * 10) / 10 : null,
    },
    cache: {
      lookupsPerSecond: perSecond(lookups, seconds),
      hitRatio: lookups > 0 ? Math.round(Math.max(0, 1 - loads / lookups) * 1000) / 1000 : null,
    },
    replicaLagMs: lag.length > 0 ? Math.round(Math.max(...lag) * 1000) : null,
    sales: input.sales,
  }
}

type Listener = (sample: string) => void

/**
 * The dashboard's numbers, computed once per interval for every viewer: each round reads every
 * worker's metrics and the sales' live numbers, turns counters into rates, and hands the sample
 * (serialized once) to every open stream. The last `historyLength` samples are kept, so a page
 * opened in the middle of a run draws the curve so far.
 */
export function createDashboardFeed(deps: {
  /** Every worker's metrics (undefined for one that did not answer), in a fixed order. */
  readWorkers(): Promise<(MetricsJson | undefined)[]>
  readSales(): Promise<DashboardSale[]>
  intervalMs: number
  historyLength: number
  onError(err: unknown): void
}) {
  const deltas = createCounterDeltas()
  const history: string[] = []
  const listeners = new Set<Listener>()
  let answersSoFar = 0
  let sales: DashboardSale[] = []
  let last = Date.now()
  let timer: NodeJS.Timeout | undefined
  let stopped = false

  async function round(): Promise<void> {
    const [workers, freshSales] = await Promise.all([
      deps.readWorkers(),
      deps.readSales().catch((err: unknown) => {
        deps.onError(err)
        return undefined
      }),
    ])
    // A failed read of the sales keeps the last numbers rather than drawing the sale as gone.
    if (freshSales) sales = freshSales
    const now = Date.now()
    const answering = workers.flatMap((metrics, n) => (metrics ? [{ worker: String(n), metrics }] : []))
    const increases = deltas.next(
      answering.map(({ worker, metrics }) => ({ worker, series: seriesOf(metrics, WATCHED) })),
    )
    const replicaLagSeconds = answering.flatMap(({ metrics }) =>
      [...seriesOf(metrics, REPLICA_LAG).values()].map((s) => s.value),
    )
    const sample = summarize({
      at: now,
      seconds: Math.max(0.001, (now - last) / 1000),
      increases,
      answersSoFar,
      replicaLagSeconds,
      sales,
    })
    last = now
    answersSoFar = sample.answers.total
    const serialized = JSON.stringify(sample)
    history.push(serialized)
    if (history.length > deps.historyLength) history.shift()
    for (const listener of listeners) listener(serialized)
  }

  // Rounds never overlap: the next one is scheduled when the last one finished, however slow it was.
  function schedule() {
    if (stopped) return
    timer = setTimeout(() => {
      round().catch(deps.onError).finally(schedule)
    }, deps.intervalMs)
  }

  return {
    start(): void {
      last = Date.now()
      schedule()
    },
    /** The kept samples, oldest first, each already serialized as JSON. */
    history(): readonly string[] {
      return history
    },
    /** Calls `listener` with every new sample (serialized); returns the function that unsubscribes. */
    subscribe(listener: Listener): () => void {
      listeners.add(listener)
      return () => listeners.delete(listener)
    },
    stop(): void {
      stopped = true
      clearTimeout(timer)
      listeners.clear()
    },
  }
}

export type DashboardFeed = ReturnType<typeof createDashboardFeed>
