import autocannon from 'autocannon'
import { createProgress } from './progress.js'

// One autocannon run, with what the report needs and autocannon does not keep: every answer classified
// by status and error code ("409 SOLD_OUT" apart from "409 IDEMPOTENCY_KEY_IN_USE"), responses over time,
// and a latency histogram. autocannon's own numbers (percentiles, requests sent) come along unchanged.

export interface LoadRequest {
  method?: 'GET' | 'POST' | 'PUT' | 'DELETE'
  path?: string
  headers?: Record<string, string>
  body?: string
  /** Shapes the next request (user, key, path); returning null restarts the connection's sequence. */
  setupRequest?(request: autocannon.Request, context: Record<string, unknown>): autocannon.Request | null
  /** Sees each answer with the context its setupRequest left; runs after the answer is counted. */
  onResponse?(status: number, body: string, context: Record<string, unknown>, headers: Headers): void
}

export type Headers = Record<string, string | string[] | undefined>

export interface LoadOptions {
  /** Shown on the progress line. */
  title: string
  url: string
  connections: number
  durationSeconds: number
  /** Requests per second over all connections (autocannon's overallRate); unset: as fast as answered. */
  overallRate?: number
  /** Requests a connection sends in a loop; each may be shaped by its own setupRequest. */
  requests: LoadRequest[]
  /** Extra text for the progress line, e.g. the units left. */
  progressNote?: () => string
  /** Called when the first connections open: the run's time zero. */
  onStart?: (startedAt: number) => void
  /** Sees every answer's status and latency (ms) as it arrives, e.g. for percentiles per minute. */
  onAnswer?: (status: number, latencyMs: number) => void
  timeoutSeconds?: number
}

export interface LatencySummary {
  p50: number
  p90: number
  p99: number
  max: number
  mean: number
}

export interface LoadStats {
  startedAt: string
  durationSeconds: number
  connections: number
  overallRate: number | null
  sent: number
  answered: number
  /** Requests that got no answer: connection errors and timeouts (autocannon's count). */
  errors: number
  timeouts: number
  /** The first requests that got no answer: when (ms into the run) and why, so a failed run says what broke. */
  errorSamples: { atMs: number; error: string }[]
  /** Requests still open when the run stopped; their answers were never read. */
  unanswered: number
  requestsPerSecond: number
  latencyMs: LatencySummary
  /** "201", "409 SOLD_OUT", "429 RATE_LIMITED", "502" ... */
  answers: Record<string, number>
  /** Upper bound in ms (Infinity last) and how many answers took at most that long. */
  latencyHistogram: { upToMs: number; count: number }[]
  /** CPU the load generator itself used (this process): it shares the machine with what it measures. */
  generatorCpuSeconds: number
  /** Answers per second over time, in TIMELINE_STEP_MS steps: 2xx, the rest, and of the rest the 5xx. */
  timeline: TimelineStep[]
}

export interface TimelineStep {
  t: number
  ok: number
  other: number
  failed: number
}

export const TIMELINE_STEP_MS = 250
export const MAX_ERROR_SAMPLES = 20
const LATENCY_BUCKETS_MS = [
  0.5,
  1,
  2,
  3,
  5,
  7.5,
  10,
  15,
  20,
  30,
  50,
  75,
  100,
  150,
  200,
  300,
  500,
  750,
  1000,
  2000,
  5000,
  Infinity,
]

/** "409 SOLD_OUT" from a status and an error body `{ code, message }`; 2xx and bodies without a code: "200". */
export function answerKey(status: number, body: string): string {
  if (status < 400) return String(status)
  try {
    const code = (JSON.parse(body) as { code?: unknown }).code
    return typeof code === 'string' ? `${status} ${code}` : String(status)
  } catch {
    return String(status)
  }
}

export async function runLoad(options: LoadOptions): Promise<LoadStats> {
  const answers: Record<string, number> = {}
  const histogram = LATENCY_BUCKETS_MS.map((upToMs) => ({ upToMs, count: 0 }))
  const timeline: TimelineStep[] = []
  const errorSamples: LoadStats['errorSamples'] = []
  let started = Date.now()
  let answered = 0

  const requests: autocannon.Request[] = options.requests.map((request) => ({
    method: request.method ?? 'GET',
    path: request.path ?? '/',
    headers: request.headers ?? {},
    ...(request.body !== undefined ? { body: request.body } : {}),
    ...(request.setupRequest
      ? {
          setupRequest: (req: autocannon.Request, context: object) =>
            request.setupRequest!(req, context as Record<string, unknown>) as autocannon.Request,
        }
      : {}),
    onResponse: (status: number, body: string, context: object, headers: Headers | undefined) => {
      const key = answerKey(status, body)
      answers[key] = (answers[key] ?? 0) + 1
      request.onResponse?.(status, body, context as Record<string, unknown>, headers ?? {})
    },
  }))

  const progress = createProgress(options.title, options.durationSeconds * 1000, () => {
    const elapsed = (Date.now() - started) / 1000
    const rate = elapsed > 0 ? Math.round(answered / elapsed) : 0
    const note = options.progressNote?.()
    return `${answered.toLocaleString('en-US')} answers, ${rate.toLocaleString('en-US')}/s${note ? `, ${note}` : ''}`
  })

  const cpuBefore = process.cpuUsage()
  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon(
      {
        url: options.url,
        connections: options.connections,
        duration: options.durationSeconds,
        timeout: options.timeoutSeconds ?? 10,
        requests,
        ...(options.overallRate ? { overallRate: options.overallRate } : {}),
      },
      (err: unknown, res: autocannon.Result) => (err ? reject(err as Error) : resolve(res)),
    )
    instance.on('start', () => {
      started = Date.now()
      options.onStart?.(started)
      progress.start()
    })
    instance.on('response', (_client, statusCode, _bytes, responseTime) => {
      answered++
      const bucket = histogram.find((b) => responseTime <= b.upToMs)!
      bucket.count++
      const step = Math.floor((Date.now() - started) / TIMELINE_STEP_MS)
      while (timeline.length <= step)
        timeline.push({ t: (timeline.length * TIMELINE_STEP_MS) / 1000, ok: 0, other: 0, failed: 0 })
      if (statusCode >= 200 && statusCode < 300) timeline[step]!.ok++
      else timeline[step]!.other++
      if (statusCode >= 500) timeline[step]!.failed++
      options.onAnswer?.(statusCode, responseTime)
    })
    instance.on('reqError', (error: Error & { code?: string }) => {
      if (errorSamples.length < MAX_ERROR_SAMPLES)
        errorSamples.push({ atMs: Date.now() - started, error: error.code ?? error.message })
    })
    // Ctrl-C stops the load (autocannon then reports what it has), not the process: the verifier still runs.
    const stop = () => instance.stop()
    process.once('SIGINT', stop)
    instance.once('done', () => process.removeListener('SIGINT', stop))
  }).finally(() => progress.stop())

  const perSecond = 1000 / TIMELINE_STEP_MS
  const cpu = process.cpuUsage(cpuBefore)
  return {
    startedAt: new Date(started).toISOString(),
    durationSeconds: result.duration,
    connections: options.connections,
    overallRate: options.overallRate ?? null,
    sent: result.requests.sent,
    answered,
    errors: result.errors,
    timeouts: result.timeouts,
    errorSamples,
    unanswered: Math.max(0, result.requests.sent - answered - result.errors),
    requestsPerSecond: answered / result.duration,
    latencyMs: {
      p50: result.latency.p50,
      p90: result.latency.p90,
      p99: result.latency.p99,
      max: result.latency.max,
      mean: result.latency.mean,
    },
    answers,
    latencyHistogram: histogram,
    generatorCpuSeconds: (cpu.user + cpu.system) / 1e6,
    // The last step is usually partial: leave it out rather than draw a false drop.
    timeline: timeline
      .slice(0, Math.max(1, Math.floor((result.duration * 1000) / TIMELINE_STEP_MS)))
      .map((s) => ({
        t: s.t,
        ok: s.ok * perSecond,
        other: s.other * perSecond,
        failed: s.failed * perSecond,
      })),
  }
}

/**
 * Runs the load and, from the moment its first connections open, `alongside` it (a fault). Waits for
 * both whatever either does, so a failing fault never leaves the load running (or a paused server)
 * behind; each outcome comes back as Promise.allSettled gives it.
 */
export function runLoadAlongside<T>(
  options: LoadOptions,
  alongside: () => Promise<T>,
): Promise<[PromiseSettledResult<LoadStats>, PromiseSettledResult<T>]> {
  let loadStarted!: () => void
  const started = new Promise<void>((resolve) => (loadStarted = resolve))
  const load = runLoad({
    ...options,
    onStart: (at) => {
      options.onStart?.(at)
      loadStarted()
    },
  })
  return Promise.allSettled([load, started.then(alongside)])
}

/** Calls `sample` every `everyMs` until stopped; keeps (seconds since `since`, value) pairs. */
export function sampleEvery<T>(everyMs: number, since: () => number, sample: () => Promise<T | undefined>) {
  const points: { t: number; value: T }[] = []
  let busy = false
  const timer = setInterval(() => {
    if (busy) return
    busy = true
    const t = (Date.now() - since()) / 1000
    sample()
      .then((value) => {
        if (value !== undefined) points.push({ t, value })
      })
      .catch(() => undefined)
      .finally(() => (busy = false))
  }, everyMs)
  return {
    points,
    stop: () => clearInterval(timer),
  }
}
