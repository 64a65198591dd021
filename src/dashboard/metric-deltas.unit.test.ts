import { describe, expect, it } from 'vitest'
import { summarize } from './dashboard-feed.js'
import type { MetricsJson } from '../merged-metrics.js'
import { createCounterDeltas, quantileFromBuckets, seriesOf, type Series } from './metric-deltas.js'

const counter = (name: string, value: number, labels: Record<string, string> = {}): Series => ({
  name,
  labels,
  value,
})
const worker = (id: string, ...series: Series[]) => ({
  worker: id,
  series: new Map(series.map((s) => [`${s.name}${JSON.stringify(s.labels)}`, s])),
})

describe('quantileFromBuckets', () => {
  it('when the observations fill one bucket, then the quantile is interpolated inside it', () => {
    // 10 observations, all between 0.01 and 0.025 s.
    const buckets = [
      { le: 0.01, count: 0 },
      { le: 0.025, count: 10 },
      { le: Infinity, count: 10 },
    ]
    expect(quantileFromBuckets(0.5, buckets)).toBeCloseTo(0.0175)
    expect(quantileFromBuckets(0.99, buckets)).toBeCloseTo(0.02485)
  })

  it('when the slowest observations lie past the last bound, then p99 is that bound', () => {
    const buckets = [
      { le: 1, count: 90 },
      { le: 2.5, count: 90 },
      { le: Infinity, count: 100 },
    ]
    expect(quantileFromBuckets(0.99, buckets)).toBe(2.5)
    expect(quantileFromBuckets(0.5, buckets)).toBeCloseTo(0.5556, 3)
  })

  it('when nothing was observed, then there is no quantile', () => {
    expect(quantileFromBuckets(0.5, [{ le: Infinity, count: 0 }])).toBeNull()
    expect(quantileFromBuckets(0.5, [])).toBeNull()
  })
})

describe('createCounterDeltas', () => {
  it('when a worker is first seen, then its counters are a baseline and count nothing', () => {
    const deltas = createCounterDeltas()
    expect(deltas.next([worker('0', counter('a_total', 500))])).toEqual([])
    expect(deltas.next([worker('0', counter('a_total', 530))])).toEqual([counter('a_total', 30)])
  })

  it('when two workers count, then their increases add up', () => {
    const deltas = createCounterDeltas()
    deltas.next([worker('0', counter('a_total', 5)), worker('1', counter('a_total', 7))])
    const next = deltas.next([worker('0', counter('a_total', 15)), worker('1', counter('a_total', 8))])
    expect(next).toEqual([counter('a_total', 11)])
  })

  it('when a worker restarts (its counter drops), then what it counted since the restart is its increase', () => {
    const deltas = createCounterDeltas()
    deltas.next([worker('0', counter('a_total', 1000))])
    expect(deltas.next([worker('0', counter('a_total', 4))])).toEqual([counter('a_total', 4)])
  })

  it('when a known worker starts a new series, then its whole value counts', () => {
    const deltas = createCounterDeltas()
    deltas.next([worker('0', counter('a_total', 1, { code: 'X' }))])
    const next = deltas.next([
      worker('0', counter('a_total', 1, { code: 'X' }), counter('a_total', 3, { code: 'SOLD_OUT' })),
    ])
    expect(next).toEqual([counter('a_total', 3, { code: 'SOLD_OUT' })])
  })

  it('when a worker misses a round, then its next answer is compared with its last one', () => {
    const deltas = createCounterDeltas()
    deltas.next([worker('0', counter('a_total', 10))])
    deltas.next([])
    expect(deltas.next([worker('0', counter('a_total', 25))])).toEqual([counter('a_total', 15)])
  })
})

describe('seriesOf', () => {
  it('when metrics carry a worker label, then it is dropped and histogram parts keep their own names', () => {
    const series = seriesOf(
      [
        {
          name: 'h',
          help: '',
          type: 'histogram',
          aggregator: 'sum',
          values: [
            { value: 2, metricName: 'h_bucket', labels: { le: 0.1, worker: 'api-0' } },
            { value: 3, metricName: 'h_count', labels: { worker: 'api-0' } },
          ],
        },
        {
          name: 'g',
          help: '',
          type: 'gauge',
          aggregator: 'max',
          // prom-client's JSON has null where the gauge is NaN.
          values: [{ value: null, labels: { worker: 'api-0' } }],
        },
      ] as unknown as MetricsJson,
      new Set(['h', 'g']),
    )
    expect([...series.values()]).toEqual([counter('h_bucket', 2, { le: '0.1' }), counter('h_count', 3)])
  })
})

describe('summarize', () => {
  it('when answers of each kind arrive, then they are split by outcome and rated per second', () => {
    const http = (status: string, count: number, route = '/api/sales/:id/purchase') =>
      counter('http_request_duration_seconds_count', count, { status_code: status, route })
    const sample = summarize({
      at: 0,
      seconds: 2,
      increases: [
        http('201', 10),
        http('409', 30),
        http('503', 2),
        counter('http_errors_total', 30, { status_code: '409', code: 'SOLD_OUT' }),
        counter('http_errors_total', 2, { status_code: '503', code: 'SERVICE_UNAVAILABLE' }),
        counter('cache_requests_total', 100, { layer: 'l1', result: 'hit' }),
        counter('cache_requests_total', 5, { layer: 'db', result: 'miss' }),
        counter('order_batch_size_count', 2),
        counter('order_batch_size_sum', 10),
        counter('stock_conflicts_total', 4, { strategy: 'optimistic' }),
      ],
      answersSoFar: 100,
      replicaLagSeconds: [0.002, 0.012],
      sales: [],
    })
    expect(sample.answers).toEqual({
      perSecond: 21,
      total: 142,
      byOutcome: { '2xx': 5, '409 SOLD_OUT': 15, '5xx': 1 },
    })
    expect(sample.cache).toEqual({ lookupsPerSecond: 50, hitRatio: 0.95 })
    expect(sample.batches).toEqual({ perSecond: 1, meanSize: 5 })
    expect(sample.stock).toEqual({ optimistic: { conflictsPerSecond: 2, retriesPerSecond: 0 } })
    expect(sample.replicaLagMs).toBe(12)
    expect(sample.latency).toEqual({ p50Ms: null, p99Ms: null })
  })
})
