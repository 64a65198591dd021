import { AggregatorRegistry, type MetricObjectWithValues, type MetricValue, type Registry } from 'prom-client'

export type MetricsJson = MetricObjectWithValues<MetricValue<string>>[]

/** Every worker's metrics as JSON, in the order of `workerUrls`; undefined for a worker that did not answer within a second. */
export async function fetchWorkerMetrics(workerUrls: string[]): Promise<(MetricsJson | undefined)[]> {
  return Promise.all(
    workerUrls.map(async (url) => {
      const response = await fetch(url, { signal: AbortSignal.timeout(1000) }).catch(() => undefined)
      return response?.ok
        ? ((await response.json().catch(() => undefined)) as MetricsJson | undefined)
        : undefined
    }),
  )
}

/**
 * One view of the whole cluster's metrics. prom-client's AggregatorRegistry expects to be the Node
 * cluster's primary process, and under PM2 the primary is PM2's daemon, so instead the jobs process
 * asks every worker's metrics port for its numbers (JSON) and adds them up with the same aggregator.
 * The `worker` label is dropped first, so the same series of different workers sum into one.
 */
export async function mergeWorkerMetrics(
  own: Registry,
  workerUrls: string[],
): Promise<{ text: string; sources: string[] }> {
  const fetched = await fetchWorkerMetrics(workerUrls)
  const parts = [
    ...fetched.filter((part) => part !== undefined),
    await own.getMetricsAsJSON(),
  ] as MetricsJson[]
  const withoutWorker = parts.map((metrics) =>
    metrics.map((metric) => ({
      ...metric,
      values: metric.values.map(({ labels, ...value }) => {
        const { worker: _worker, ...rest } = labels as Record<string, string>
        return { ...value, labels: rest }
      }),
    })),
  )
  const sources = workerUrls.filter((_, n) => fetched[n] !== undefined)
  const merged = AggregatorRegistry.aggregate(withoutWorker)
  return { text: await merged.metrics(), sources }
}
