import type { MetricsJson } from '../merged-metrics.js'

/** One series of one process: `http_errors_total{code="SOLD_OUT",status_code="409"}` and its value. */
export interface Series {
  name: string
  labels: Record<string, string>
  value: number
}

const keyOf = (name: string, labels: Record<string, string>) =>
  `${name}${JSON.stringify(Object.entries(labels).sort(([a], [b]) => a.localeCompare(b)))}`

/**
 * The series of the metrics named in `names`, by key, without the `worker` label. A histogram gives
 * its `_bucket` (cumulative, with `le`), `_sum` and `_count` series. A NaN gauge (the replica lag while
 * the replica does not answer) arrives as null and is left out.
 */
export function seriesOf(metrics: MetricsJson, names: ReadonlySet<string>): Map<string, Series> {
  const series = new Map<string, Series>()
  for (const metric of metrics) {
    if (!names.has(metric.name)) continue
    for (const { labels, value, ...rest } of metric.values) {
      if (typeof value !== 'number' || Number.isNaN(value)) continue
      const name = 'metricName' in rest && typeof rest.metricName === 'string' ? rest.metricName : metric.name
      const { worker: _worker, ...own } = labels as Record<string, string | number>
      const clean = Object.fromEntries(Object.entries(own).map(([k, v]) => [k, String(v)]))
      series.set(keyOf(name, clean), { name, labels: clean, value })
    }
  }
  return series
}

/**
 * Turns each worker's cumulative counters into increases since the previous call, summed over the
 * workers. Each worker is compared with its own previous numbers, so a restarted worker (its counters
 * back at 0) counts what it did since it came up instead of a large negative step, the same rule as
 * Prometheus' rate(). A worker seen for the first time gives its baseline and counts nothing; a new
 * series of a known worker (the first SOLD_OUT) counts its whole value.
 */
export function createCounterDeltas() {
  const previous = new Map<string, Map<string, Series>>()
  return {
    next(workers: { worker: string; series: Map<string, Series> }[]): Series[] {
      const sums = new Map<string, Series>()
      for (const { worker, series } of workers) {
        const before = previous.get(worker)
        previous.set(worker, series)
        if (!before) continue
        for (const [key, now] of series) {
          const then = before.get(key)?.value ?? 0
          const increase = now.value >= then ? now.value - then : now.value
          if (increase === 0) continue
          const sum = sums.get(key) ?? { ...now, value: 0 }
          sum.value += increase
          sums.set(key, sum)
        }
      }
      return [...sums.values()]
    },
  }
}

/**
 * The q-quantile of observations given as cumulative bucket counts, estimated as Prometheus'
 * histogram_quantile() does: find the bucket holding the q-th observation and interpolate linearly
 * inside it, assuming the observations spread evenly between its bounds (the first bucket starts at
 * 0). Past the last finite bound, the answer is that bound. Null when there are no observations.
 */
export function quantileFromBuckets(q: number, buckets: { le: number; count: number }[]): number | null {
  const sorted = [...buckets].sort((a, b) => a.le - b.le)
  const total = sorted.at(-1)?.count ?? 0
  if (total === 0) return null
  const rank = q * total
  let lowerBound = 0
  let lowerCount = 0
  for (const { le, count } of sorted) {
    if (count >= rank) {
      if (le === Infinity) return lowerBound
      if (count === lowerCount) return le
      return lowerBound + ((le - lowerBound) * (rank - lowerCount)) / (count - lowerCount)
    }
    lowerBound = le
    lowerCount = count
  }
  return lowerBound
}

/** The summed `_bucket` series of one histogram, as cumulative counts per upper bound. */
export function bucketsOf(
  series: Series[],
  bucketName: string,
  include: (labels: Record<string, string>) => boolean = () => true,
): { le: number; count: number }[] {
  const byBound = new Map<number, number>()
  for (const { name, labels, value } of series) {
    if (name !== bucketName || !include(labels)) continue
    const le = labels.le === '+Inf' ? Infinity : Number(labels.le)
    byBound.set(le, (byBound.get(le) ?? 0) + value)
  }
  return [...byBound].map(([le, count]) => ({ le, count }))
}

/** The sum of the series called `name` whose labels pass `include`. */
export function total(
  series: Series[],
  name: string,
  include: (labels: Record<string, string>) => boolean = () => true,
): number {
  return series.reduce((sum, s) => (s.name === name && include(s.labels) ? sum + s.value : sum), 0)
}

/** Sums of the series called `name`, grouped by what `group` makes of their labels. */
export function totalsBy(
  series: Series[],
  name: string,
  group: (labels: Record<string, string>) => string | undefined,
): Record<string, number> {
  const totals: Record<string, number> = {}
  for (const s of series) {
    if (s.name !== name) continue
    const key = group(s.labels)
    if (key !== undefined) totals[key] = (totals[key] ?? 0) + s.value
  }
  return totals
}
