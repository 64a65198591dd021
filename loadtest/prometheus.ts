// Just enough of the Prometheus text format to read the app's counters before and after a run: one
// sample per line, `name{label="value",...} number`, comments skipped. Summing over label sets merges
// workers, whether the text comes from the jobs process's merged view or from each worker in turn.

import { httpText } from '../scripts/stack/process.js'

export interface Sample {
  name: string
  labels: Record<string, string>
  value: number
}

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g

export function parsePrometheusText(text: string): Sample[] {
  const samples: Sample[] = []
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const match = LINE.exec(line)
    if (!match) continue
    const labels: Record<string, string> = {}
    for (const [, name, value] of (match[2] ?? '').matchAll(LABEL))
      labels[name!] = value!.replace(/\\(.)/g, '$1')
    const value = Number(match[3])
    if (!Number.isNaN(value)) samples.push({ name: match[1]!, labels, value })
  }
  return samples
}

/** The sum of every sample of `name` whose labels include `where`. */
export function sumOf(samples: Sample[], name: string, where: Record<string, string> = {}): number {
  let sum = 0
  for (const s of samples) {
    if (s.name !== name) continue
    if (Object.entries(where).every(([k, v]) => s.labels[k] === v)) sum += s.value
  }
  return sum
}

/** The label values of `label` that `name` carries, e.g. the cache layers. */
export function labelValues(samples: Sample[], name: string, label: string): string[] {
  return [...new Set(samples.filter((s) => s.name === name && s.labels[label]).map((s) => s.labels[label]!))]
}

export interface MetricsSource {
  /** The jobs process's merged view of every worker (tried first). */
  merged: string
  /** Each worker's own endpoint, summed when the merged view does not answer. */
  workers: string[]
}

export interface Scrape {
  from: 'merged' | 'workers'
  samples: Sample[]
}

const fetchText = (url: string) => httpText(url, 2000)

/** The app's metrics now, or undefined when no metrics endpoint answers (the report then shows n/a). */
export async function scrape(source: MetricsSource): Promise<Scrape | undefined> {
  const merged = await fetchText(source.merged)
  if (merged !== undefined) return { from: 'merged', samples: parsePrometheusText(merged) }
  const texts = await Promise.all(source.workers.map(fetchText))
  if (texts.some((t) => t === undefined) || texts.length === 0) return undefined
  return { from: 'workers', samples: texts.flatMap((t) => parsePrometheusText(t!)) }
}

export interface CacheLayer {
  layer: string
  lookups: number
  hits: number
  /** hits / lookups, or null without lookups. */
  hitRatio: number | null
}

/** What happened in the app during a run: counters after minus before. */
export interface MetricsDelta {
  from: 'merged' | 'workers'
  stockConflicts: number
  stockRetries: number
  stockDecisions: number
  batchesCommitted: number
  batchesFailed: number
  batchedOrders: number
  cache: CacheLayer[]
}

export function metricsDelta(before: Scrape | undefined, after: Scrape | undefined): MetricsDelta | null {
  if (!before || !after) return null
  const delta = (name: string, where: Record<string, string> = {}) =>
    sumOf(after.samples, name, where) - sumOf(before.samples, name, where)
  const layers = labelValues(after.samples, 'cache_requests_total', 'layer')
  return {
    from: after.from,
    stockConflicts: delta('stock_conflicts_total'),
    stockRetries: delta('stock_retries_sum'),
    stockDecisions: delta('stock_retries_count'),
    batchesCommitted: delta('order_batches_total', { outcome: 'committed' }),
    // A batch whose COMMIT answer was lost ('unknown') failed its buyers too (503, tokens to the reconciler).
    batchesFailed:
      delta('order_batches_total', { outcome: 'failed' }) +
      delta('order_batches_total', { outcome: 'unknown' }),
    batchedOrders: delta('order_batch_size_sum'),
    cache: layers
      .sort()
      .map((layer) => {
        const lookups = delta('cache_requests_total', { layer })
        const hits = delta('cache_requests_total', { layer, result: 'hit' })
        return { layer, lookups, hits, hitRatio: lookups > 0 ? hits / lookups : null }
      })
      .filter((layer) => layer.lookups > 0),
  }
}
