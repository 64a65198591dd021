// `npm run bench [-- --runs 3 --connections 200 --duration 10 ...]`: one run, one machine, every yardstick
// measured in that same run. Postgres runs durable for the whole bench (fsync, full_page_writes and
// synchronous_commit on; the stack goes back to its fast settings afterwards). In order: the GET and POST
// ceilings and cached reads; per stock strategy (the workers restarted with STOCK_STRATEGY between them,
// then warmed up) the stampede, the contention matrix (1, 10 and 1,000 sales) and, for the Postgres
// strategies, the 300-buyer checkout race; the redis-gate write path on its own (a 20,000-unit sale, the
// batching curve); and pgbench running our own purchase SQL on the same Postgres. Headline cells run
// --runs times after a warm-up and report the median and the spread. Writes docs/benchmarks.md and
// loadtest/results/bench-<time>.{json,html}; the JSON carries every target as a named ratio (`ratios`).
// The targets are reported, not asserted; an invariant violation fails the run.
//
// `npm run bench -- --compare A.json B.json` prints every ratio and cell median of two runs side by side.
// `npm run bench -- --soak 10` runs the soak instead (loadtest/bench/soak.ts): minutes of mixed load at
// 70 % of the measured maximum, with p99, heap, event-loop delay, pool waits and Redis memory per minute.
import { readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { STOCK_STRATEGIES, type StockStrategyName } from '../src/config.js'
import { AdminApi } from '../loadtest/admin.js'
import { benchMarkdown, type BenchResults } from '../loadtest/bench/markdown.js'
import {
  benchRatios,
  compareReports,
  formatComparison,
  judge,
  spreadOf,
  summarizeCell,
  TARGETS,
  type BenchCells,
  type BenchReportFile,
} from '../loadtest/bench/ratios.js'
import { runSoak } from '../loadtest/bench/soak.js'
import { pgbenchYardsticks, type PgbenchResult } from '../loadtest/pgbench.js'
import { bold, formatRun, green, num, red, writeReports, yellow } from '../loadtest/report.js'
import type { ScenarioRun } from '../loadtest/scenario.js'
import { browse } from '../loadtest/scenarios/browse.js'
import { ceiling, postCeiling } from '../loadtest/scenarios/ceiling.js'
import { checkoutRace, type RaceResult } from '../loadtest/scenarios/checkout-race.js'
import type { ScenarioContext } from '../loadtest/scenarios/common.js'
import { contention, CONTENTION_DEFAULTS } from '../loadtest/scenarios/contention.js'
import { stampede, STAMPEDE_DEFAULTS } from '../loadtest/scenarios/stampede.js'
import { heaviestStatements, resetStatementStats, type StatementStat } from '../loadtest/statement-stats.js'
import { loadStackOptions, loadTarget } from '../loadtest/target.js'
import { REPO_ROOT } from './stack/paths.js'
import { stackOptionsFromEnv, stackUp } from './stack/stack.js'

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    runs: { type: 'string', default: '3' },
    'warmup-seconds': { type: 'string', default: '3' },
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
    'pgbench-seconds': { type: 'string', default: '8' },
    'pgbench-clients': { type: 'string', default: '1,10,50,100' },
    compare: { type: 'boolean', default: false },
    soak: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
})

if (values.help) {
  console.log(`npm run bench [-- options]         the whole benchmark; writes docs/benchmarks.md
npm run bench -- --compare A.json B.json    two runs' ratios side by side (loadtest/results/bench-*.json)
npm run bench -- --soak MINUTES             the soak alone: mixed load at 70 % of the measured maximum

options (defaults): --runs 3 --warmup-seconds 3 --connections 200 --duration 10 --units 2000 --users 4000
  --strategies redis-gate,atomic,optimistic,pessimistic --matrix-seconds 5 --large-units 20000
  --large-users 10000 --curve 1,10,50,200,400 --curve-seconds 5 --pgbench-seconds 8 --pgbench-clients 1,10,50,100`)
  process.exit(0)
}

if (values.compare) {
  if (positionals.length !== 2) {
    console.error('usage: npm run bench -- --compare A.json B.json')
    process.exit(2)
  }
  const [a, b] = positionals.map((file) => JSON.parse(readFileSync(file, 'utf8')) as BenchReportFile) as [
    BenchReportFile,
    BenchReportFile,
  ]
  const label = (file: string, report: BenchReportFile) => report.machine?.date ?? path.basename(file)
  console.log(formatComparison(compareReports(a, b), [label(positionals[0]!, a), label(positionals[1]!, b)]))
  process.exit(0)
}

/** A whole number >= min from a flag, or the run stops before anything starts. */
function count(flag: string, min = 1): number {
  const value = Number(values[flag as keyof typeof values])
  if (!Number.isInteger(value) || value < min) {
    console.error(
      `--${flag} ${String(values[flag as keyof typeof values])}: expected a whole number >= ${min}`,
    )
    process.exit(2)
  }
  return value
}
const counts = (flag: string) =>
  String(values[flag as keyof typeof values])
    .split(',')
    .map((part) => {
      const value = Number(part)
      if (!Number.isInteger(value) || value < 1) {
        console.error(`--${flag} ${String(values[flag as keyof typeof values])}: expected whole numbers >= 1`)
        process.exit(2)
      }
      return value
    })

const started = Date.now()
const log = (message: string) =>
  console.log(`[bench +${((Date.now() - started) / 1000).toFixed(1)}s] ${message}`)

if (values.soak !== undefined) {
  const minutes = Number(values.soak)
  if (!Number.isFinite(minutes) || minutes <= 0) {
    console.error(`--soak ${values.soak}: expected minutes > 0`)
    process.exit(2)
  }
  const result = await runSoak({ minutes, connections: count('connections'), log })
  process.exit(result.ok ? 0 : 1)
}

const RUNS = count('runs')
const warmupSeconds = count('warmup-seconds', 0)
const connections = count('connections')
const duration = count('duration')
const units = count('units')
const users = count('users')
const strategies = values.strategies.split(',') as StockStrategyName[]
for (const s of strategies) {
  if (!STOCK_STRATEGIES.includes(s)) {
    console.error(`--strategies: unknown strategy ${JSON.stringify(s)} (${STOCK_STRATEGIES.join(', ')})`)
    process.exit(2)
  }
}
const MATRIX_ROWS = [1, 10, 1000]
/** The matrix cells that a target judges, run --runs times; the others once. */
const HEADLINE_ROWS = 1000
const matrixSeconds = count('matrix-seconds')
const largeUnits = count('large-units')
const largeUsers = count('large-users')
const curveConnections = counts('curve')
const curveSeconds = count('curve-seconds')
const RACE = { buyers: 300, units: 20 }
const loadBefore = os.loadavg()

/** The bench's stack: load-test limits, `strategy` on the workers, a durable Postgres. */
const benchStack = (strategy: StockStrategyName) =>
  loadStackOptions(process.env, strategy, { durablePostgres: true })

/** Brings the workers to `strategy` (a restart when it changed) and runs `body` against them. */
async function withStrategy<T>(strategy: StockStrategyName, body: (ctx: ScenarioContext) => Promise<T>) {
  const options = benchStack(strategy)
  log(`workers on STOCK_STRATEGY=${strategy}, durable Postgres`)
  await stackUp(options, (message) => log(`stack: ${message}`))
  const target = loadTarget(options)
  try {
    const admin = await AdminApi.connect(target)
    return await body({ target, admin, log })
  } finally {
    await target.close()
  }
}

/**
 * Runs a cell `times` times after a warm-up of the same load (a restarted worker starts cold: its JIT,
 * its pools and its caches fill during the first seconds), and prints each run.
 */
async function measure(
  what: string,
  times: number,
  cell: (seconds: number, warmup: boolean) => Promise<ScenarioRun>,
  seconds: number,
): Promise<ScenarioRun[]> {
  if (warmupSeconds > 0) {
    log(`${what}: warm-up, ${warmupSeconds} s`)
    const warm = await cell(warmupSeconds, true)
    if (!warm.verification.ok) log(red(`${what}: the warm-up broke an invariant`))
    warmups.push(warm)
  }
  const runs: ScenarioRun[] = []
  for (let i = 1; i <= times; i++) {
    const run = await cell(seconds, false)
    console.log(`\n${what}, run ${i} of ${times}\n${formatRun(run)}\n`)
    runs.push(run)
  }
  return runs
}

/**
 * Waits (up to 5 minutes) until no reservation is overdue. A stack that was down while reservations
 * expired starts with its sweeper catching up: the first cells would measure that, and the verifier
 * would rightly find reservations held past their TTL.
 */
async function settle(ctx: ScenarioContext): Promise<void> {
  const sweepSeconds = ctx.target.config.SWEEP_INTERVAL_MS / 1000
  for (let waited = 0; waited <= 300; waited += 5) {
    const { rows } = await ctx.target.db.query<{ overdue: number }>(
      `SELECT count(*)::int AS overdue FROM orders
        WHERE status = 'reserved' AND expires_at < now() - make_interval(secs => $1)`,
      [sweepSeconds],
    )
    if (rows[0]!.overdue === 0) return
    log(`waiting for the sweeper: ${rows[0]!.overdue} reservations overdue`)
    await new Promise((resolve) => setTimeout(resolve, 5000))
  }
  log(red('the sweeper did not catch up in 5 minutes: measuring anyway'))
}

const runsOf: Record<string, ScenarioRun[]> = {}
const warmups: ScenarioRun[] = []
const statements: { strategy: StockStrategyName; statements: StatementStat[] }[] = []
const matrix: { strategy: StockStrategyName; rows: number; runs: ScenarioRun[] }[] = []
const races: RaceResult[] = []
const curve: ScenarioRun[] = []
let pgbench: PgbenchResult | undefined
let postgres = { version: 'unknown', settings: 'unknown' }

try {
  await withStrategy(strategies[0] ?? 'redis-gate', async (ctx) => {
    const { rows } = await ctx.target.db.query<{ v: string; fsync: string; fpw: string; sc: string }>(
      `SELECT current_setting('server_version') AS v, current_setting('fsync') AS fsync,
              current_setting('full_page_writes') AS fpw, current_setting('synchronous_commit') AS sc`,
    )
    const r = rows[0]!
    postgres = {
      version: r.v,
      settings: `fsync ${r.fsync}, full_page_writes ${r.fpw}, synchronous_commit ${r.sc}`,
    }
    log(`postgres ${postgres.version}: ${postgres.settings}`)
    await settle(ctx)
    runsOf.getCeiling = await measure(
      'GET ceiling',
      RUNS,
      (seconds) => ceiling(ctx, { connections, duration: seconds }),
      duration,
    )
    runsOf.postCeiling = await measure(
      'POST ceiling',
      RUNS,
      (seconds) => postCeiling(ctx, { connections, duration: seconds, users }),
      duration,
    )
    runsOf.browse = await measure(
      'browse',
      RUNS,
      (seconds) => browse(ctx, { connections, duration: seconds, products: 30, saleShare: 0 }),
      duration,
    )
  })
  for (const strategy of strategies) {
    await withStrategy(strategy, async (ctx) => {
      runsOf[`stampede ${strategy}`] = await measure(
        `stampede ${strategy}`,
        RUNS,
        async (seconds, warmup) => {
          const measured = !warmup && (await resetStatementStats(ctx.target.db))
          const run = await stampede(ctx, {
            ...STAMPEDE_DEFAULTS,
            units,
            users,
            connections,
            duration: seconds,
          })
          // The heaviest statements of the last measured stampede: each run replaces the one before.
          if (measured) {
            const heaviest = { strategy, statements: await heaviestStatements(ctx.target.db) }
            statements.splice(
              0,
              statements.length,
              ...statements.filter((s) => s.strategy !== strategy),
              heaviest,
            )
          }
          return run
        },
        duration,
      )
      for (const rows of MATRIX_ROWS) {
        const times = rows === HEADLINE_ROWS && ['redis-gate', 'atomic'].includes(strategy) ? RUNS : 1
        const cellRuns: ScenarioRun[] = []
        for (let i = 0; i < times; i++) {
          const cell = await contention(ctx, {
            ...CONTENTION_DEFAULTS,
            connections,
            duration: matrixSeconds,
            rows,
          })
          log(`matrix ${strategy} x${rows}: ${num(cell.contention!.ordersPerSecond)} orders/s`)
          cellRuns.push(cell)
        }
        matrix.push({ strategy, rows, runs: cellRuns })
      }
      if (strategy !== 'redis-gate') {
        for (let i = 0; i < RUNS; i++) {
          const race = await checkoutRace(ctx.target, ctx.admin, strategy, RACE)
          log(`race ${strategy}: ${JSON.stringify(race.answers)} in ${num(race.wallMs)} ms`)
          races.push(race)
        }
      }
    })
  }
  if (strategies.includes('redis-gate')) {
    await withStrategy('redis-gate', async (ctx) => {
      // The write path on its own: a sale large enough that selling it takes most of the run.
      runsOf.largeSale = await measure(
        'large sale, redis-gate',
        RUNS,
        (seconds, warmup) =>
          stampede(ctx, {
            ...STAMPEDE_DEFAULTS,
            units: warmup ? 2000 : largeUnits,
            users: warmup ? 2000 : largeUsers,
            connections,
            duration: seconds,
          }),
        Math.max(duration, 20),
      )
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
    pgbench = await pgbenchYardsticks(ctx.target.config.DATABASE_URL, {
      clients: counts('pgbench-clients'),
      seconds: count('pgbench-seconds'),
      log,
    })
  })
} finally {
  log('putting the default settings back (npm run stack:up): fast Postgres, default strategy')
  await stackUp(stackOptionsFromEnv(process.env), (message) => log(`stack: ${message}`))
}

const matrixCell = (strategy: string, rows: number) =>
  matrix.find((m) => m.strategy === strategy && m.rows === rows)?.runs ?? []
const cells: BenchCells = {
  ...(runsOf.getCeiling && { getCeiling: summarizeCell(runsOf.getCeiling) }),
  ...(runsOf.postCeiling && { postCeiling: summarizeCell(runsOf.postCeiling) }),
  ...(runsOf.browse && { browse: summarizeCell(runsOf.browse) }),
  stampedes: Object.fromEntries(
    strategies
      .filter((s) => runsOf[`stampede ${s}`])
      .map((s) => [s, summarizeCell(runsOf[`stampede ${s}`]!)]),
  ),
  ...(runsOf.largeSale && { largeSale: summarizeCell(runsOf.largeSale) }),
  thousandSales: Object.fromEntries(
    strategies
      .filter((s) => matrixCell(s, HEADLINE_ROWS).length > 0)
      .map((s) => [s, summarizeCell(matrixCell(s, HEADLINE_ROWS))]),
  ),
  races: Object.fromEntries(
    [...new Set(races.map((r) => r.strategy))].map((s) => [
      s,
      spreadOf(races.filter((r) => r.strategy === s).map((r) => r.wallMs / 1000)),
    ]),
  ),
}
const allRuns = [...Object.values(runsOf).flat(), ...matrix.flatMap((m) => m.runs), ...curve]
const violations =
  allRuns.filter((r) => !r.verification.ok).length +
  warmups.filter((r) => !r.verification.ok).length +
  races.filter((r) => !r.ok).length
const ratios = benchRatios(
  cells,
  pgbench
    ? {
        singleRowUpdate: pgbench.singleRowUpdate.best.tps,
        purchase: pgbench.purchase.best.tps,
        purchaseOneStatement: pgbench.purchaseOneStatement.best.tps,
      }
    : null,
  violations,
)
const machine = {
  date: new Date().toISOString().slice(0, 16).replace('T', ' ') + ' UTC',
  cores: os.availableParallelism(),
  cpu: os.cpus()[0]?.model.trim() ?? 'unknown',
  memoryGiB: Math.round(os.totalmem() / 2 ** 30),
  node: process.version,
  os: `${os.type()} ${os.release()}`,
  postgres: postgres.version,
  postgresSettings: postgres.settings,
  loadBefore: loadBefore.map((l) => Math.round(l * 100) / 100),
  apiInstances: benchStack('redis-gate').apiInstances,
}
const results: BenchResults = {
  machine,
  params: {
    runs: RUNS,
    warmupSeconds,
    connections,
    duration,
    units,
    users,
    strategies,
    matrixRows: MATRIX_ROWS,
    matrixSeconds,
    largeUnits,
    largeUsers,
    curveSeconds,
    race: RACE,
  },
  runsOf,
  cells,
  ratios,
  matrix,
  races,
  curve,
  statements,
  pgbench: pgbench ?? null,
}
const files = writeReports('bench', allRuns, {
  machine,
  params: results.params,
  ceilings: { get: cells.getCeiling ?? null, post: cells.postCeiling ?? null },
  cells,
  ratios,
  pgbench: pgbench ?? null,
  races,
  statements,
})
const markdown = benchMarkdown(results, path.relative(REPO_ROOT, files.json))
writeFileSync(path.join(REPO_ROOT, 'docs', 'benchmarks.md'), markdown)
for (const target of TARGETS) {
  const ok = judge(target, ratios)
  const color = ok === null ? yellow : ok ? green : red
  const value = ratios[target.field]
  console.log(
    color(
      `target ${ok === null ? 'not measured' : ok ? 'met' : 'missed'}: ${target.name} (${typeof value === 'number' ? num(value, 2) : 'n/a'})`,
    ),
  )
}
console.log(`report: ${files.html}\n        ${files.json}\nwritten: docs/benchmarks.md`)
if (violations > 0) {
  const broken = allRuns.filter((r) => !r.verification.ok).map((r) => `${r.scenario} (${r.strategy})`)
  console.error(red(bold(`INVARIANT VIOLATED in ${broken.join(', ') || 'a warm-up or a race'}`)))
  process.exitCode = 1
}
