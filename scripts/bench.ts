// `npm run bench [-- --connections 200 --duration 10 --units 2000 --users 4000]`
// One run, one machine: the ceiling, cached reads, and per stock strategy (the workers restarted with
// STOCK_STRATEGY between them) the stampede, the contention matrix (1, 10 and 1,000 hot rows) and, for
// the Postgres strategies, the 300-buyer checkout race; then the redis-gate write path on its own (a
// large sale, and the batching curve over connections), and pgbench's single-row UPDATE on the same
// Postgres. Writes docs/benchmarks.md (ratios to the ceiling and to pgbench of this same run) and the
// full report to loadtest/results/bench-<time>.{json,html}, the JSON with every target ratio as a named
// field. The targets are reported, not asserted; an invariant violation fails the run. Postgres' time
// per statement comes from pg_stat_statements. The stack is left with its default settings.
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
import { checkoutRace, type RaceResult } from '../loadtest/scenarios/checkout-race.js'
import { contention, CONTENTION_DEFAULTS } from '../loadtest/scenarios/contention.js'
import { stampede, STAMPEDE_DEFAULTS } from '../loadtest/scenarios/stampede.js'
import { heaviestStatements, resetStatementStats, type StatementStat } from '../loadtest/statement-stats.js'
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
    'matrix-seconds': { type: 'string', default: '5' },
    'large-units': { type: 'string', default: '20000' },
    'large-users': { type: 'string', default: '10000' },
    curve: { type: 'string', default: '1,10,50,200,400' },
    'curve-seconds': { type: 'string', default: '5' },
    'pgbench-seconds': { type: 'string', default: '10' },
  },
})
const connections = Number(values.connections)
const duration = Number(values.duration)
const units = Number(values.units)
const users = Number(values.users)
const strategies = values.strategies.split(',') as StockStrategyName[]
for (const s of strategies) if (!STOCK_STRATEGIES.includes(s)) throw new Error(`unknown strategy ${s}`)
const MATRIX_ROWS = [1, 10, 1000]
const matrixSeconds = Number(values['matrix-seconds'])
const largeUnits = Number(values['large-units'])
const largeUsers = Number(values['large-users'])
const curveConnections = values.curve.split(',').map(Number)
const curveSeconds = Number(values['curve-seconds'])
const RACE = { buyers: 300, units: 20 }

const started = Date.now()
const log = (message: string) =>
  console.log(`[bench +${((Date.now() - started) / 1000).toFixed(1)}s] ${message}`)

interface StrategyRun {
  strategy: StockStrategyName
  run: ScenarioRun
  /** Postgres' heaviest statements during the stampede. */
  statements: StatementStat[]
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
const matrix: { strategy: StockStrategyName; run: ScenarioRun }[] = []
const races: RaceResult[] = []
let largeSale: ScenarioRun | undefined
const curve: ScenarioRun[] = []
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
      const measured = await resetStatementStats(ctx.target.db)
      const run = await stampede(ctx, { ...STAMPEDE_DEFAULTS, units, users, connections, duration })
      show(run)
      stampedes.push({ strategy, run, statements: measured ? await heaviestStatements(ctx.target.db) : [] })
      for (const rows of MATRIX_ROWS) {
        const cell = await contention(ctx, {
          ...CONTENTION_DEFAULTS,
          connections,
          duration: matrixSeconds,
          rows,
        })
        log(`matrix ${strategy} x${rows}: ${num(cell.contention!.ordersPerSecond)} orders/s`)
        matrix.push({ strategy, run: cell })
      }
      if (strategy !== 'redis-gate') {
        const race = await checkoutRace(ctx.target, ctx.admin, strategy, RACE)
        log(`race ${strategy}: ${JSON.stringify(race.answers)} in ${num(race.wallMs)} ms`)
        races.push(race)
      }
    })
  }
  if (strategies.includes('redis-gate')) {
    await withStrategy('redis-gate', async (ctx) => {
      // The write path on its own: a sale large enough that selling it takes most of the run.
      largeSale = await stampede(ctx, {
        ...STAMPEDE_DEFAULTS,
        units: largeUnits,
        users: largeUsers,
        connections,
        duration: Math.max(duration, 20),
      })
      show(largeSale)
      // The batching curve: more buyers at once make larger batches; no sale sells out here.
      for (const c of curveConnections) {
        const run = await stampede(ctx, {
          ...STAMPEDE_DEFAULTS,
          units: 50_000,
          users: 25_000,
          connections: c,
          duration: curveSeconds,
          replay: 0,
          greedy: 0,
        })
        log(`curve ${c} connections: ${num(run.sale?.durableUnitsPerSecond ?? 0)} units/s`)
        curve.push(run)
      }
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

const runs = [
  ceilingRun,
  browseRun,
  ...stampedes.map((s) => s.run),
  ...matrix.map((m) => m.run),
  largeSale,
  ...curve,
].filter((r): r is ScenarioRun => !!r)
const machine = describeMachine()
const ratios = targetRatios()
const files = writeReports('bench', runs, { machine, pgbench, ratios, races, statements: stampedes })
const markdown = benchmarksMarkdown(pgbench, machine, files.html)
writeFileSync(path.join(REPO_ROOT, 'docs', 'benchmarks.md'), markdown)
console.log(markdown.split('<!-- notes -->')[0])
console.log(`report: ${files.html}\n        ${files.json}\nwritten: docs/benchmarks.md`)
const violated = runs.filter((r) => !r.verification.ok)
if (violated.length > 0 || races.some((r) => !r.ok)) {
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

// Function declarations (hoisted): the summary at the top of this file calls them.
function ref(): ScenarioRun | undefined {
  return ceilingRun
}
function ratioToCeiling(run: ScenarioRun | undefined): number | null {
  const ceilingRate = ref()?.load.requestsPerSecond
  return run && ceilingRate ? run.load.requestsPerSecond / ceilingRate : null
}
function p99ToCeiling(run: ScenarioRun | undefined): number | null {
  const ceilingP99 = ref()?.load.latencyMs.p99
  return run && ceilingP99 ? run.load.latencyMs.p99 / ceilingP99 : null
}
function stampedeOf(strategy: StockStrategyName): ScenarioRun | undefined {
  return stampedes.find((s) => s.strategy === strategy)?.run
}
function unitsPerPgbench(run: ScenarioRun | undefined): number | null {
  return run?.sale?.durableUnitsPerSecond && pgbench ? run.sale.durableUnitsPerSecond / pgbench.tps : null
}
/** Orders per committed redis-gate batch, or null without batches. */
function meanBatchOf(run: ScenarioRun): number | null {
  return run.metrics && run.metrics.batchesCommitted > 0
    ? run.metrics.batchedOrders / run.metrics.batchesCommitted
    : null
}
function f(n: number | null | undefined, digits = 0): string {
  return n === null || n === undefined || Number.isNaN(n) ? 'n/a' : num(n, digits)
}

/** Every target of docs/benchmarks.md as a named number: the JSON report carries them. */
function targetRatios() {
  const soldAll = (strategy: StockStrategyName) => {
    const run = stampedeOf(strategy)
    return run?.sale ? run.sale.taken === run.sale.units : null
  }
  return {
    browseToCeiling: ratioToCeiling(browseRun),
    gateAttemptsToCeiling: ratioToCeiling(stampedeOf('redis-gate')),
    gateP99ToCeiling: p99ToCeiling(stampedeOf('redis-gate')),
    gateLargeSaleUnitsToPgbench: unitsPerPgbench(largeSale),
    atomicUnitsToPgbench: unitsPerPgbench(stampedeOf('atomic')),
    pessimisticUnitsToPgbench: unitsPerPgbench(stampedeOf('pessimistic')),
    optimisticUnitsToPgbench: unitsPerPgbench(stampedeOf('optimistic')),
    atomicSoldAll: soldAll('atomic'),
    pessimisticSoldAll: soldAll('pessimistic'),
    slowestRaceSeconds: races.length ? Math.max(...races.map((r) => r.wallMs)) / 1000 : null,
    invariantViolations: runs.filter((r) => !r.verification.ok).length + races.filter((r) => !r.ok).length,
  }
}

function resultRow(label: string, run: ScenarioRun): string {
  const meanBatch = meanBatchOf(run)
  return `| ${label} | ${f(run.load.requestsPerSecond)} | ${f(ratioToCeiling(run), 2)} | ${f(run.load.latencyMs.p50, 1)} | ${f(run.load.latencyMs.p99, 1)} | ${f(p99ToCeiling(run), 2)} | ${run.sale ? `${run.sale.taken}/${run.sale.units}` : ''} | ${f(run.sale?.durableUnitsPerSecond)} | ${run.metrics ? f(run.metrics.stockConflicts) : 'n/a'} | ${run.metrics ? f(run.metrics.stockRetries) : 'n/a'} | ${run.metrics ? `${f(run.metrics.batchesCommitted)}${meanBatch ? ` (${f(meanBatch, 1)})` : ''}` : 'n/a'} | ${run.verification.ok ? 'pass' : '**FAIL**'} |`
}

function matrixSection(): string {
  if (matrix.length === 0) return '_not run_'
  const cell = (strategy: string, rows: number) =>
    matrix.find((m) => m.strategy === strategy && m.run.contention?.rows === rows)?.run
  const perOrder = (n: number | undefined, orders: number | undefined) =>
    n === undefined || !orders ? 'n/a' : f(n / orders, 2)
  const lines = strategies.flatMap((strategy) =>
    MATRIX_ROWS.map((rows) => {
      const run = cell(strategy, rows)
      const c = run?.contention
      return `| ${strategy} | ${rows} | ${f(c?.ordersPerSecond)} | ${f(c?.p50CreatedMs, 1)} | ${f(run?.load.latencyMs.p99, 1)} | ${perOrder(run?.metrics?.stockConflicts, c?.orders)} | ${perOrder(run?.metrics?.stockRetries, c?.orders)} | ${run?.verification.ok ? 'pass' : '**FAIL**'} |`
    }),
  )
  const series = MATRIX_ROWS.map(
    (rows) =>
      `    bar [${strategies.map((s) => Math.round(cell(s, rows)?.contention?.ordersPerSecond ?? 0)).join(', ')}]`,
  )
  return `| strategy | rows | orders/s | p50 of a 201 ms | p99 ms | conflicts per order | retries per order | invariants |
|---|---:|---:|---:|---:|---:|---:|---|
${lines.join('\n')}

\`\`\`mermaid
xychart-beta
    title "Orders per second by strategy: bars for ${MATRIX_ROWS.join(', ')} rows"
    x-axis [${strategies.map((s) => `"${s}"`).join(', ')}]
    y-axis "orders/s"
${series.join('\n')}
\`\`\``
}

function curveSection(): string {
  if (curve.length === 0) return '_not run_'
  const rows = curve.map((run) => {
    const batch = meanBatchOf(run)
    return `| ${run.load.connections} | ${f(batch, 1)} | ${f(run.sale?.p50CreatedMs, 1)} | ${f(run.sale?.durableUnitsPerSecond)} | ${run.verification.ok ? 'pass' : '**FAIL**'} |`
  })
  const x = curve.map((r) => `"${r.load.connections}"`).join(', ')
  return `| connections | mean batch | p50 of a 201 ms | durable units/s | invariants |
|---:|---:|---:|---:|---|
${rows.join('\n')}

\`\`\`mermaid
xychart-beta
    title "redis-gate: durable units/s by connections"
    x-axis [${x}]
    y-axis "units/s"
    line [${curve.map((r) => Math.round(r.sale?.durableUnitsPerSecond ?? 0)).join(', ')}]
\`\`\``
}

function statementsSection(): string {
  const parts = stampedes
    .filter((s) => s.statements.length > 0)
    .map((s) => {
      const total = s.statements.reduce((sum, st) => sum + st.totalMs, 0)
      const rows = s.statements.map(
        (st) =>
          `| \`${st.query.slice(0, 110).replace(/\|/g, '\\|')}${st.query.length > 110 ? '…' : ''}\` | ${f(st.calls)} | ${f(st.meanMs, 3)} | ${f(st.totalMs)} | ${f((100 * st.totalMs) / total)}% |`,
      )
      return `**${s.strategy}** (stampede above)\n\n| statement | calls | mean ms | total ms | share |\n|---|---:|---:|---:|---:|\n${rows.join('\n')}`
    })
  return parts.length ? parts.join('\n\n') : '_pg_stat_statements is not available on this server_'
}

function raceSection(): string {
  if (races.length === 0) return '_not run_'
  return `| strategy | answers | conflicts | retries | wall time ms | ok |
|---|---|---:|---:|---:|---|
${races
  .map(
    (r) =>
      `| ${r.strategy} | ${Object.entries(r.answers)
        .map(([k, v]) => `${v} × ${k}`)
        .join(', ')} | ${f(r.conflicts)} | ${f(r.retries)} | ${f(r.wallMs)} | ${r.ok ? 'yes' : '**no**'} |`,
  )
  .join('\n')}`
}

function benchmarksMarkdown(pg: PgbenchResult | undefined, m: Machine, htmlReport: string): string {
  const r = ratios
  const gate = stampedeOf('redis-gate')
  const targets: [string, boolean | null, string][] = [
    [
      'cached product reads >= 0.85 of the ceiling',
      r.browseToCeiling === null ? null : r.browseToCeiling >= 0.85,
      `${f(r.browseToCeiling, 2)} of the ceiling`,
    ],
    [
      `redis-gate purchase attempts >= 0.7 of the ceiling at ${connections} connections`,
      r.gateAttemptsToCeiling === null ? null : r.gateAttemptsToCeiling >= 0.7,
      `${f(r.gateAttemptsToCeiling, 2)} of the ceiling`,
    ],
    [
      'redis-gate p99 <= 1.5 x the ceiling p99',
      r.gateP99ToCeiling === null ? null : r.gateP99ToCeiling <= 1.5,
      `${f(gate?.load.latencyMs.p99, 1)} ms = ${f(r.gateP99ToCeiling, 2)} x ${f(ref()?.load.latencyMs.p99, 1)} ms`,
    ],
    [
      `redis-gate durable units/s in the ${num(largeUnits)}-unit sale >= 2 x pgbench single-row tps`,
      r.gateLargeSaleUnitsToPgbench === null ? null : r.gateLargeSaleUnitsToPgbench >= 2,
      `${f(largeSale?.sale?.durableUnitsPerSecond)} units/s = ${f(r.gateLargeSaleUnitsToPgbench, 2)} x ${f(pg?.tps)} tps`,
    ],
    [
      'atomic durable units/s >= 0.5 x pgbench, whole sale sold',
      r.atomicUnitsToPgbench === null ? null : r.atomicUnitsToPgbench >= 0.5 && r.atomicSoldAll === true,
      `${f(r.atomicUnitsToPgbench, 2)} x pgbench; sold all: ${r.atomicSoldAll ?? 'n/a'}`,
    ],
    [
      'pessimistic durable units/s >= 0.3 x pgbench, whole sale sold',
      r.pessimisticUnitsToPgbench === null
        ? null
        : r.pessimisticUnitsToPgbench >= 0.3 && r.pessimisticSoldAll === true,
      `${f(r.pessimisticUnitsToPgbench, 2)} x pgbench; sold all: ${r.pessimisticSoldAll ?? 'n/a'}`,
    ],
    [
      `the ${RACE.buyers}-buyer, ${RACE.units}-unit checkout race under 1 s for every strategy`,
      r.slowestRaceSeconds === null ? null : r.slowestRaceSeconds < 1,
      `slowest ${f(r.slowestRaceSeconds, 2)} s`,
    ],
    [
      'zero invariant violations',
      r.invariantViolations === 0,
      `${r.invariantViolations} runs with a violation`,
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
  const label = (run: ScenarioRun) =>
    run.scenario === 'stampede'
      ? `stampede, ${run.strategy}`
      : run.scenario === 'browse'
        ? 'browse (cached product reads)'
        : 'ceiling (GET /health/live)'
  const mainRuns = [ceilingRun, browseRun, ...stampedes.map((s) => s.run)].filter(
    (x): x is ScenarioRun => !!x,
  )
  return `# Benchmarks

Written by \`npm run bench\` (scripts/bench.ts); the numbers below are from one run on one machine. Every
ratio is to the ceiling of the **same run** (GET /health/live through the same nginx and PM2 path, same
connections), or to pgbench's single-row UPDATE on the same Postgres in the same run, because absolute
numbers say more about the machine than about the code. The full report, with charts, was
${path.relative(REPO_ROOT, htmlReport)} (git-ignored), and its JSON carries every target ratio as a named
field (\`ratios\`). How the scenarios work: [load-testing.md](load-testing.md).

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
${mainRuns.map((run) => resultRow(label(run), run)).join('\n')}

pgbench, same Postgres, same run: \`UPDATE bench_stock SET available = available - 1 WHERE id = 1 AND available >= 1\`,
${pg ? `${pg.clients} clients, ${pg.seconds} s: **${f(pg.tps)} tps** (${f(pg.transactions)} transactions)` : 'not run'}.

## The contention matrix

The same ${connections} connections buy one unit at a time from 1, 10 or 1,000 flash sales (stock rows), a
random row per request, ${matrixSeconds} s per cell; no row sells out, so every answer is a purchase decided under
that contention. Conflicts and retries per order are the app's own counters (an optimistic version
clash, a pessimistic lock timeout).

${matrixSection()}

## The write path on its own

A redis-gate sale of ${num(largeUnits)} units to ${num(largeUsers)} buyers, large enough that selling takes most of the run:

| scenario | answers/s | x ceiling | p50 ms | p99 ms | p99 x ceiling | taken | durable units/s | conflicts | retries | batches | invariants |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|
${largeSale ? resultRow('large sale, redis-gate', largeSale) : '| not run |'}

The batching curve: the same path with 1 to ${Math.max(...curveConnections)} connections, ${curveSeconds} s each, on a sale that does not sell out.
More buyers at once make larger batches, and one transaction then carries more orders.

${curveSection()}

## The checkout race

${RACE.buyers} buyers, each with one unit in their cart, check out ${RACE.units} units at the same instant through nginx.

${raceSection()}

## Where Postgres' time goes

The heaviest statements of each stampede above, from pg_stat_statements (reset before each run).

${statementsSection()}

## Targets (reported, not asserted)

| target | result | |
|---|---|---|
${targets.map(([name, ok, detail]) => `| ${name} | ${mark(ok)} | ${detail} |`).join('\n')}

## Notes

Kept between runs (edit between the markers).

<!-- notes -->${notes}<!-- /notes -->
`
}
