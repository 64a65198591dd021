// `npm run bench [-- --connections 200 --duration 10 --units 2000 --users 4000]`
// One run, one machine: the ceiling, cached reads, the stampede under each of the four stock strategies
// (the workers restarted with STOCK_STRATEGY between them), and pgbench's single-row UPDATE on the same
// Postgres. Writes docs/benchmarks.md (ratios to the ceiling of this same run) and the full report to
// loadtest/results/bench-<time>.{json,html}. The targets (listed in docs/benchmarks.md) are reported, not asserted; an
// invariant violation fails the run. The stack is left with its default settings.
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { STOCK_STRATEGIES, type StockStrategyName } from '../src/config.js'
import { AdminApi } from '../loadtest/admin.js'
import { pgbenchSingleRowUpdate, type PgbenchResult } from '../loadtest/pgbench.js'
import { bold, formatRun, green, num, red, writeReports, yellow } from '../loadtest/report.js'
import type { ScenarioRun } from '../loadtest/scenario.js'
import { browse } from '../loadtest/scenarios/browse.js'
import { ceiling } from '../loadtest/scenarios/ceiling.js'
import { stampede, STAMPEDE_DEFAULTS } from '../loadtest/scenarios/stampede.js'
import { loadStackOptions, loadTarget } from '../loadtest/target.js'
import { REPO_ROOT } from './stack/paths.js'
import { stackOptionsFromEnv, stackUp } from './stack/stack.js'

const { values } = parseArgs({
  options: {
    connections: { type: 'string', default: '200' },
    duration: { type: 'string', default: '10' },
    units: { type: 'string', default: '2000' },
    users: { type: 'string', default: '4000' },
    strategies: { type: 'string', default: 'redis-gate,atomic,optimistic,pessimistic' },
    'pgbench-seconds': { type: 'string', default: '10' },
  },
})
const connections = Number(values.connections)
const duration = Number(values.duration)
const units = Number(values.units)
const users = Number(values.users)
const strategies = values.strategies.split(',') as StockStrategyName[]
for (const s of strategies) if (!STOCK_STRATEGIES.includes(s)) throw new Error(`unknown strategy ${s}`)

const started = Date.now()
const log = (message: string) =>
  console.log(`[bench +${((Date.now() - started) / 1000).toFixed(1)}s] ${message}`)

interface StrategyRun {
  strategy: StockStrategyName
  run: ScenarioRun
}

/** Brings the workers to `strategy` (a restart when it changed) and runs `body` against them. */
async function withStrategy<T>(
  strategy: StockStrategyName,
  body: (ctx: Parameters<typeof ceiling>[0]) => Promise<T>,
) {
  const options = loadStackOptions(process.env, strategy)
  log(`workers on STOCK_STRATEGY=${strategy}`)
  await stackUp(options, (message) => log(`stack: ${message}`))
  const target = loadTarget(options)
  try {
    const admin = await AdminApi.connect(target)
    return await body({ target, admin, log })
  } finally {
    await target.close()
  }
}

const show = (run: ScenarioRun) => console.log(`\n${formatRun(run)}\n`)
let ceilingRun: ScenarioRun | undefined
let browseRun: ScenarioRun | undefined
const stampedes: StrategyRun[] = []
let pgbench: PgbenchResult | undefined
let postgresVersion = 'unknown'

try {
  await withStrategy(strategies[0] ?? 'redis-gate', async (ctx) => {
    ceilingRun = await ceiling(ctx, { connections, duration })
    show(ceilingRun)
    browseRun = await browse(ctx, { connections, duration, products: 30, saleShare: 0 })
    show(browseRun)
  })
  for (const strategy of strategies) {
    await withStrategy(strategy, async (ctx) => {
      const run = await stampede(ctx, { ...STAMPEDE_DEFAULTS, units, users, connections, duration })
      show(run)
      stampedes.push({ strategy, run })
    })
  }
  await withStrategy(strategies.at(-1) ?? 'redis-gate', async (ctx) => {
    log(
      `pgbench: single-row conditional UPDATE, ${connections} clients wanted, ${values['pgbench-seconds']} s`,
    )
    pgbench = await pgbenchSingleRowUpdate(
      ctx.target.db,
      ctx.target.config.DATABASE_URL,
      connections,
      Number(values['pgbench-seconds']),
    )
    log(`pgbench: ${num(pgbench.tps)} tps with ${pgbench.clients} clients`)
    postgresVersion = (
      await ctx.target.db.query<{ v: string }>(`SELECT current_setting('server_version') AS v`)
    ).rows[0]!.v
  })
} finally {
  log('putting the default settings back (npm run stack:up)')
  await stackUp(stackOptionsFromEnv(process.env), (message) => log(`stack: ${message}`))
}

const runs = [ceilingRun, browseRun, ...stampedes.map((s) => s.run)].filter((r): r is ScenarioRun => !!r)
const machine = describeMachine()
const files = writeReports('bench', runs, { machine, pgbench })
const markdown = benchmarksMarkdown(runs, pgbench, machine, files.html)
writeFileSync(path.join(REPO_ROOT, 'docs', 'benchmarks.md'), markdown)
console.log(markdown.split('<!-- notes -->')[0])
console.log(`report: ${files.html}\n        ${files.json}\nwritten: docs/benchmarks.md`)
const violated = runs.filter((r) => !r.verification.ok)
if (violated.length > 0) {
  console.error(
    red(bold(`INVARIANT VIOLATED in ${violated.map((r) => `${r.scenario} (${r.strategy})`).join(', ')}`)),
  )
  process.exitCode = 1
}

interface Machine {
  date: string
  cores: number
  cpu: string
  memoryGiB: number
  node: string
  os: string
  postgres: string
}

function describeMachine(): Machine {
  return {
    date: new Date().toISOString().slice(0, 16).replace('T', ' ') + ' UTC',
    cores: os.availableParallelism(),
    cpu: os.cpus()[0]?.model.trim() ?? 'unknown',
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    os: `${os.type()} ${os.release()}`,
    postgres: postgresVersion,
  }
}

function benchmarksMarkdown(
  runs: ScenarioRun[],
  pg: PgbenchResult | undefined,
  m: Machine,
  htmlReport: string,
): string {
  const ref = ceilingRun
  const ratio = (run: ScenarioRun) => (ref ? run.load.requestsPerSecond / ref.load.requestsPerSecond : NaN)
  const p99Ratio = (run: ScenarioRun) => (ref ? run.load.latencyMs.p99 / ref.load.latencyMs.p99 : NaN)
  const f = (n: number | null | undefined, digits = 0) =>
    n === null || n === undefined || Number.isNaN(n) ? 'n/a' : num(n, digits)
  const rows = runs.map((run) => {
    const label =
      run.scenario === 'stampede'
        ? `stampede, ${run.strategy}`
        : run.scenario === 'browse'
          ? 'browse (cached product reads)'
          : 'ceiling (GET /health/live)'
    const meanBatch =
      run.metrics && run.metrics.batchesCommitted > 0
        ? run.metrics.batchedOrders / run.metrics.batchesCommitted
        : null
    return `| ${label} | ${f(run.load.requestsPerSecond)} | ${f(ratio(run), 2)} | ${f(run.load.latencyMs.p50, 1)} | ${f(run.load.latencyMs.p99, 1)} | ${f(p99Ratio(run), 2)} | ${run.sale ? `${run.sale.taken}/${run.sale.units}` : ''} | ${f(run.sale?.durableUnitsPerSecond)} | ${run.metrics ? f(run.metrics.stockConflicts) : 'n/a'} | ${run.metrics ? f(run.metrics.stockRetries) : 'n/a'} | ${run.metrics ? `${f(run.metrics.batchesCommitted)}${meanBatch ? ` (${f(meanBatch, 1)})` : ''}` : 'n/a'} | ${run.verification.ok ? 'pass' : '**FAIL**'} |`
  })
  const gate = stampedes.find((s) => s.strategy === 'redis-gate')?.run
  const targets: [string, boolean | null, string][] = [
    [
      'cached product reads >= 0.85 of the ceiling',
      browseRun && ref ? ratio(browseRun) >= 0.85 : null,
      browseRun ? `${f(ratio(browseRun), 2)} of the ceiling` : 'not run',
    ],
    [
      `redis-gate purchase attempts >= 0.7 of the ceiling at ${connections} connections`,
      gate && ref ? ratio(gate) >= 0.7 : null,
      gate ? `${f(ratio(gate), 2)} of the ceiling` : 'not run',
    ],
    [
      'redis-gate p99 <= 1.5 x the ceiling p99',
      gate && ref ? p99Ratio(gate) <= 1.5 : null,
      gate
        ? `${f(gate.load.latencyMs.p99, 1)} ms = ${f(p99Ratio(gate), 2)} x ${f(ref?.load.latencyMs.p99, 1)} ms`
        : 'not run',
    ],
    [
      "redis-gate durable sold units/s above pgbench's single-row UPDATE tps",
      gate?.sale?.durableUnitsPerSecond && pg ? gate.sale.durableUnitsPerSecond > pg.tps : null,
      `${f(gate?.sale?.durableUnitsPerSecond)} units/s vs ${f(pg?.tps)} tps`,
    ],
    [
      'zero invariant violations',
      runs.every((r) => r.verification.ok),
      `${runs.filter((r) => !r.verification.ok).length} runs with a violation`,
    ],
  ]
  const mark = (ok: boolean | null) => (ok === null ? 'not measured' : ok ? 'met' : '**missed**')
  for (const [name, ok, detail] of targets) {
    const color = ok === null ? yellow : ok ? green : red
    console.log(color(`target ${mark(ok).replace(/\*/g, '')}: ${name} (${detail})`))
  }
  const notesFile = path.join(REPO_ROOT, 'docs', 'benchmarks.md')
  const previous = existsSync(notesFile) ? readFileSync(notesFile, 'utf8') : ''
  const notes = /<!-- notes -->([\s\S]*?)<!-- \/notes -->/.exec(previous)?.[1] ?? '\n_No notes yet._\n'
  return `# Benchmarks

Written by \`npm run bench\` (scripts/bench.ts); the numbers below are from one run on one machine. Every
ratio is to the ceiling of the **same run** (GET /health/live through the same nginx and PM2 path, same
connections), because absolute numbers say more about the machine than about the code. The full report,
with charts, was ${path.relative(REPO_ROOT, htmlReport)} (git-ignored). How the scenarios work:
[load-testing.md](load-testing.md).

## Machine

| | |
|---|---|
| date | ${m.date} |
| cores | ${m.cores} (${m.cpu}) |
| memory | ${m.memoryGiB} GiB |
| node | ${m.node} |
| os | ${m.os} |
| postgres | ${m.postgres} (local stack: fsync off, synchronous_commit on) |

The load generator (autocannon, one thread), nginx, ${loadStackOptions(process.env, 'redis-gate').apiInstances} API workers, the jobs process,
Postgres (primary + replica) and Redis all share these cores.

## Results

${connections} connections, ${duration} s per scenario; the stampede sells ${units} units to ${users} users (per-user
limit ${STAMPEDE_DEFAULTS.limit}, ${STAMPEDE_DEFAULTS.replay * 100}% retries with the same Idempotency-Key, ${STAMPEDE_DEFAULTS.greedy * 100}% of turns by greedy users).
Answers/s counts every answer (201, 409 SOLD_OUT, 429 ...). Durable units/s = units in fresh 201 answers /
time of the last one. Batches: the redis-gate write batches (mean orders per batch).

| scenario | answers/s | x ceiling | p50 ms | p99 ms | p99 x ceiling | taken | durable units/s | conflicts | retries | batches | invariants |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|
${rows.join('\n')}

pgbench, same Postgres, same run: \`UPDATE bench_stock SET available = available - 1 WHERE id = 1 AND available >= 1\`,
${pg ? `${pg.clients} clients, ${pg.seconds} s: **${f(pg.tps)} tps** (${f(pg.transactions)} transactions)` : 'not run'}.

## Targets (reported, not asserted)

| target | result | |
|---|---|---|
${targets.map(([name, ok, detail]) => `| ${name} | ${mark(ok)} | ${detail} |`).join('\n')}

## Notes

Kept between runs (edit between the markers).

<!-- notes -->${notes}<!-- /notes -->
`
}
