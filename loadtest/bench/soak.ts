import { randomUUID } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import path from 'node:path'
import { Redis } from 'ioredis'
import { createLoadTestUsers } from '../../src/auth/load-test-users.js'
import { REPO_ROOT } from '../../scripts/stack/paths.js'
import { stackUp, stackUrls } from '../../scripts/stack/stack.js'
import { AdminApi, type Sale } from '../admin.js'
import { createBuyers } from '../buyers.js'
import { putOneUnitInCart } from '../cart-steps.js'
import { runLoad, sampleEvery, type LoadRequest } from '../load.js'
import { scrape, sumOf, type Sample } from '../prometheus.js'
import { num, RESULTS_DIR } from '../report.js'
import { loadStackOptions, loadTarget, type LoadTarget } from '../target.js'
import { verifyInvariants, type Verification } from '../verify.js'
import { trendOf, type Trend } from './trend.js'

// `npm run bench -- --soak MINUTES`: what only time shows. A shop's mixed load (product and sale pages,
// a cart read and write, a checkout and its payment, a flash-sale purchase; a new sale opens every
// minute) first runs as fast as it is answered to find the maximum, then runs at 70 % of that rate for
// MINUTES. Every minute it records the p99 of the answers, the workers' heap and event-loop delay, the
// requests waiting for a Postgres connection and Redis' memory, and then asks of each series whether it
// is flat (loadtest/bench/trend.ts). Postgres runs durable, as in the bench. Writes
// loadtest/results/soak-<time>.json and docs/soak.md.

export interface SoakOptions {
  minutes: number
  connections: number
  log(message: string): void
}

interface Minute {
  minute: number
  answers: number
  p99Ms: number
  failed: number
  heapMiB: number
  eventLoopP99Ms: number
  poolWaiting: number
  redisMiB: number
}

/** The series a soak judges, how much each may drift over the soak, and the floor of its level. */
const SERIES: { key: keyof Minute; label: string; tolerance: number; floor: number }[] = [
  { key: 'p99Ms', label: 'p99 ms', tolerance: 0.25, floor: 20 },
  { key: 'heapMiB', label: 'heap MiB (all workers)', tolerance: 0.1, floor: 50 },
  { key: 'eventLoopP99Ms', label: 'event-loop delay p99 ms (worst worker)', tolerance: 0.25, floor: 20 },
  { key: 'poolWaiting', label: 'requests waiting for a Postgres connection', tolerance: 0.5, floor: 2 },
  { key: 'redisMiB', label: 'Redis memory MiB', tolerance: 0.1, floor: 10 },
]

const PROBE_SECONDS = 15
const SHARE_OF_MAXIMUM = 0.7

export async function runSoak(options: SoakOptions): Promise<{ ok: boolean }> {
  const { log } = options
  const stack = loadStackOptions(process.env, 'redis-gate', { durablePostgres: true })
  await stackUp(stack, (message) => log(`stack: ${message}`))
  const target = loadTarget(stack)
  const redis = new Redis(stackUrls(stack).redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 })
  try {
    await redis.connect()
    const admin = await AdminApi.connect(target)
    const shop = await openShop(target, admin, options, log)
    log(`probe: the mixed load as fast as it is answered, ${PROBE_SECONDS} s (after a warm-up)`)
    await shop.load(5)
    const probe = await shop.load(PROBE_SECONDS)
    const rate = Math.max(1, Math.round(probe.requestsPerSecond * SHARE_OF_MAXIMUM))
    log(
      `maximum ${num(probe.requestsPerSecond)} answers/s; soaking at ${num(rate)}/s for ${options.minutes} min`,
    )

    const startedAt = Date.now()
    const minuteOf = () => Math.floor((Date.now() - startedAt) / 60_000)
    const latencies: number[][] = []
    const failures: number[] = []
    const samples: { minute: number; heap: number; loop: number; waiting: number; redis: number }[] = []
    const sampler = sampleEvery(
      5000,
      () => startedAt,
      async () => {
        const scraped = await scrape(target.metrics)
        const info = await redis.info('memory')
        if (!scraped) return undefined
        samples.push({
          minute: minuteOf(),
          heap: sumOf(scraped.samples, 'nodejs_heap_size_used_bytes'),
          loop: maxOf(scraped.samples, 'nodejs_eventloop_lag_p99_seconds'),
          waiting: sumOf(scraped.samples, 'db_pool_connections', { state: 'waiting' }),
          redis: Number(/used_memory:(\d+)/.exec(info)?.[1] ?? NaN),
        })
        return true
      },
    )
    const saleTimer = setInterval(
      () => void shop.newSale().catch((e: Error) => log(`new sale: ${e.message}`)),
      60_000,
    )
    const load = await shop
      .load(options.minutes * 60, rate, (status, ms) => {
        const m = minuteOf()
        ;(latencies[m] ??= []).push(ms)
        if (status >= 500) failures[m] = (failures[m] ?? 0) + 1
      })
      .finally(() => {
        sampler.stop()
        clearInterval(saleTimer)
      })
    const minutes: Minute[] = []
    for (let m = 0; m < options.minutes; m++) {
      const inMinute = samples.filter((s) => s.minute === m)
      const mean = (pick: (s: (typeof samples)[number]) => number) =>
        inMinute.length ? inMinute.reduce((sum, s) => sum + pick(s), 0) / inMinute.length : NaN
      minutes.push({
        minute: m + 1,
        answers: latencies[m]?.length ?? 0,
        p99Ms: percentile(latencies[m] ?? [], 0.99),
        failed: failures[m] ?? 0,
        heapMiB: mean((s) => s.heap) / 2 ** 20,
        eventLoopP99Ms: mean((s) => s.loop) * 1000,
        poolWaiting: mean((s) => s.waiting),
        redisMiB: mean((s) => s.redis) / 2 ** 20,
      })
    }
    const trends = SERIES.map((s) => ({
      ...s,
      trend: trendOf(
        minutes.map((m) => m[s.key]).filter((v) => Number.isFinite(v)),
        s.tolerance,
        s.floor,
      ),
    }))
    log('verifying the invariants ...')
    // The verifier judges a run's sales, or its cart checkouts: the soak made both, so it asks twice.
    const unanswered = load.unanswered + load.errors
    const verifications: Verification[] = []
    for (const evidence of [shop.saleEvidence(unanswered), shop.checkoutEvidence(unanswered)])
      verifications.push(
        await verifyInvariants({
          db: target.db,
          admin,
          evidence,
          sweepIntervalMs: target.config.SWEEP_INTERVAL_MS,
        }),
      )
    const verification: Verification = {
      ...verifications[0]!,
      ok: verifications.every((v) => v.ok),
      checks: verifications.flatMap((v) => v.checks),
    }
    const ok = verification.ok && trends.every((t) => t.trend?.flat !== false)
    const report = {
      probe: probe.requestsPerSecond,
      rate,
      minutes,
      trends,
      verification,
      answers: load.answers,
    }
    const stamp = new Date(startedAt).toISOString().replace(/[:.]/g, '-').slice(0, 19)
    const json = path.join(RESULTS_DIR, `soak-${stamp}Z.json`)
    writeFileSync(json, `${JSON.stringify(report, null, 2)}\n`)
    const markdown = soakMarkdown(options, probe.requestsPerSecond, rate, minutes, trends, verification, json)
    writeFileSync(path.join(REPO_ROOT, 'docs', 'soak.md'), markdown)
    console.log(markdown)
    log(`written: ${path.relative(REPO_ROOT, json)}, docs/soak.md`)
    return { ok }
  } finally {
    redis.disconnect()
    await target.close()
  }
}

/** The shop's users, product and current sale, and the mixed load over them. */
async function openShop(target: LoadTarget, admin: AdminApi, options: SoakOptions, log: SoakOptions['log']) {
  const productIds = (
    await target.db.query<{ id: number }>('SELECT id FROM products ORDER BY id LIMIT 30')
  ).rows.map((r) => r.id)
  const cartProduct = await admin.loadTestProduct(target.db)
  // Enough for every checkout of the soak: 70 % of a fast machine's maximum, a ninth of it checkouts.
  await admin.restock(cartProduct, 1_000_000)
  const users = await createLoadTestUsers(target.db, target.config, 5000)
  const sales: Sale[] = []
  const unitsPerSale = 20_000
  const buyers = createBuyers(users, { replayShare: 0.05, greedyShare: 0.02, units: unitsPerSale, limit: 2 })
  const checkoutOrders = new Set<string>()
  const run = randomUUID().slice(0, 8)
  const newSale = async () => {
    const sale = await admin.createSale({
      productId: cartProduct,
      units: unitsPerSale,
      perUserLimit: 2,
      priceCents: 999,
      openSeconds: options.minutes * 60 + 600,
    })
    sales.push(sale)
    log(`sale ${sale.id} opened: ${num(unitsPerSale)} units`)
  }
  await newSale()
  let turn = 0
  const auth = (context: Record<string, unknown>) => `Bearer ${users[context.user as number]!.token}`
  // One turn of a connection: three product pages, a sale page, the cart, one unit into it, a checkout,
  // its payment, and a flash-sale purchase. A step that cannot go on (412, 409) skips what depends on it.
  const requests: LoadRequest[] = [
    ...[0, 1, 2].map((i): LoadRequest => ({
      setupRequest: (request, context) => {
        if (i === 0) {
          context.turn = turn++
          context.user = (context.turn as number) % users.length
        }
        request.method = 'GET'
        request.headers = {}
        request.path = `/api/products/${productIds[((context.turn as number) + i) % productIds.length]}`
        return request
      },
    })),
    {
      setupRequest: (request) => {
        request.method = 'GET'
        request.headers = {}
        request.path = `/api/sales/${sales.at(-1)!.id}`
        return request
      },
    },
    {
      method: 'GET',
      path: '/api/cart',
      setupRequest: (request, context) => {
        request.headers = { authorization: auth(context) }
        return request
      },
      onResponse: (status, _body, context, headers) => {
        context.etag = status === 200 ? headers.etag : undefined
      },
    },
    putOneUnitInCart(cartProduct, auth),
    {
      method: 'POST',
      path: '/api/checkout',
      setupRequest: (request, context) => {
        request.headers = { authorization: auth(context), 'idempotency-key': `${run}-co-${context.turn}` }
        return request
      },
      onResponse: (status, body, context) => {
        context.orderId = undefined
        if (status !== 201) return
        const id = (JSON.parse(body) as { id: string }).id
        checkoutOrders.add(id)
        context.orderId = id
      },
    },
    {
      method: 'POST',
      setupRequest: (request, context) => {
        // Without an order there is nothing to pay: the turn goes on to the sale with a harmless read.
        if (typeof context.orderId !== 'string') {
          request.method = 'GET'
          request.path = '/api/orders'
        } else {
          request.method = 'POST'
          request.path = `/api/orders/${context.orderId}/pay`
        }
        request.headers = { authorization: auth(context), 'idempotency-key': `${run}-pay-${context.turn}` }
        return request
      },
    },
    {
      setupRequest: (request, context) => buyers.next(request, context, sales.at(-1)!.id),
      onResponse: (status, body, context, headers) => buyers.record(status, body, headers, context),
    },
  ]
  return {
    newSale,
    load: (seconds: number, rate?: number, onAnswer?: (status: number, ms: number) => void) =>
      runLoad({
        title: rate ? 'soak' : 'soak probe',
        url: target.nginxUrl,
        connections: options.connections,
        durationSeconds: seconds,
        ...(rate && { overallRate: rate }),
        requests,
        ...(onAnswer && { onAnswer }),
        onStart: (at) => buyers.start(at),
      }),
    saleEvidence: (unanswered: number) => ({
      saleIds: sales.map((s) => s.id),
      userIds: users.map((u) => u.id),
      orderIds: buyers.tally.orderIds,
      duplicateFreshIds: buyers.tally.duplicateFreshIds,
      unanswered,
    }),
    checkoutEvidence: (unanswered: number) => ({
      saleIds: [],
      userIds: users.map((u) => u.id),
      orderIds: checkoutOrders,
      duplicateFreshIds: 0,
      unanswered,
    }),
  }
}

function maxOf(samples: Sample[], name: string): number {
  return samples.filter((s) => s.name === name).reduce((max, s) => Math.max(max, s.value), 0)
}

function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!
}

function soakMarkdown(
  options: SoakOptions,
  probe: number,
  rate: number,
  minutes: Minute[],
  trends: { label: string; tolerance: number; floor: number; trend: Trend | null }[],
  verification: Verification,
  json: string,
): string {
  const f = (n: number, digits = 1) => (Number.isFinite(n) ? num(n, digits) : 'n/a')
  return `# Soak

Written by \`npm run bench -- --soak ${options.minutes}\` (loadtest/bench/soak.ts); the numbers are from one run
(${path.relative(REPO_ROOT, json)}, git-ignored). A shop's mixed load (three product pages, a sale page, the cart
read and written, a checkout and its payment, a flash-sale purchase; a new sale every minute) ran as fast as
it was answered for ${PROBE_SECONDS} s: **${num(probe)} answers/s**. It then ran at 70 % of that, **${num(rate)} answers/s**,
for ${options.minutes} minutes, ${options.connections} connections, Postgres durable.

| minute | answers | 5xx | p99 ms | heap MiB | event-loop p99 ms | pool waiting | Redis MiB |
|---:|---:|---:|---:|---:|---:|---:|---:|
${minutes.map((m) => `| ${m.minute} | ${num(m.answers)} | ${num(m.failed)} | ${f(m.p99Ms)} | ${f(m.heapMiB)} | ${f(m.eventLoopP99Ms)} | ${f(m.poolWaiting, 2)} | ${f(m.redisMiB)} |`).join('\n')}

Flat means: the least-squares line through the minutes moves, from the first minute to the last, by no more
than the tolerance times the series' mean (or its floor, whichever is larger).

| series | mean | slope per minute | r² | drift over the soak | allowed | flat |
|---|---:|---:|---:|---:|---:|---|
${trends
  .map(({ label, trend }) =>
    trend
      ? `| ${label} | ${f(trend.mean, 2)} | ${f(trend.slope, 3)} | ${f(trend.r2, 2)} | ${f(trend.drift, 2)} | ${f(trend.allowed, 2)} | ${trend.flat ? 'yes' : '**no**'} |`
      : `| ${label} | n/a | | | | | not measured |`,
  )
  .join('\n')}

Invariants after the soak: ${verification.ok ? 'every check passed' : '**a check failed**'}.
`
}
