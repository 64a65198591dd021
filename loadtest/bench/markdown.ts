import { existsSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { REPO_ROOT } from '../../scripts/stack/paths.js'
import type { PgbenchResult, PgbenchScriptResult } from '../pgbench.js'
import { num } from '../report.js'
import type { ScenarioRun } from '../scenario.js'
import type { RaceResult } from '../scenarios/checkout-race.js'
import { STAMPEDE_DEFAULTS } from '../scenarios/stampede.js'
import type { StatementStat } from '../statement-stats.js'
import {
  judge,
  spreadOf,
  TARGETS,
  type BenchCells,
  type BenchRatios,
  type CellSummary,
  type Spread,
} from './ratios.js'

// docs/benchmarks.md, written by `npm run bench` from one run's results. Only the notes between the
// markers survive a run; everything else is this run's.

export interface BenchResults {
  machine: {
    date: string
    cores: number
    cpu: string
    memoryGiB: number
    node: string
    os: string
    postgres: string
    postgresSettings: string
    loadBefore: number[]
    apiInstances: number
  }
  params: {
    runs: number
    warmupSeconds: number
    connections: number
    duration: number
    units: number
    users: number
    strategies: string[]
    matrixRows: number[]
    matrixSeconds: number
    largeUnits: number
    largeUsers: number
    curveSeconds: number
    race: { buyers: number; units: number }
  }
  /** The measured runs of each headline cell, by name ("getCeiling", "stampede atomic", ...). */
  runsOf: Record<string, ScenarioRun[]>
  cells: BenchCells
  ratios: BenchRatios
  matrix: { strategy: string; rows: number; runs: ScenarioRun[] }[]
  races: RaceResult[]
  curve: ScenarioRun[]
  statements: { strategy: string; statements: StatementStat[] }[]
  pgbench: PgbenchResult | null
}

const f = (n: number | null | undefined, digits = 0) =>
  n === null || n === undefined || Number.isNaN(n) ? 'n/a' : num(n, digits)
/** "1,234 (1,200–1,260)": the median, and the range when there was more than one run. */
const spread = (s: Spread | null | undefined, digits = 0) =>
  !s
    ? 'n/a'
    : s.values.length > 1
      ? `${f(s.median, digits)} (${f(s.min, digits)}–${f(s.max, digits)})`
      : f(s.median, digits)

function cellRow(
  label: string,
  cell: CellSummary | undefined,
  yardstick: string,
  ratio: number | null,
): string {
  if (!cell) return `| ${label} | not run | | | | | | |`
  return `| ${label} | ${spread(cell.answersPerSecond)} | ${yardstick} ${f(ratio, 2)} | ${spread(cell.p99Ms, 1)} | ${spread(cell.durableUnitsPerSecond)} | ${cell.soldAll === null ? '' : cell.soldAll ? 'yes' : 'no'} | ${spread(cell.generatorMicrosPerAnswer)} | ${cell.invariantsHeld ? 'pass' : '**FAIL**'} |`
}

function mainTable(r: BenchResults): string {
  const { cells, ratios } = r
  const get = cells.getCeiling?.answersPerSecond?.median
  const post = cells.postCeiling?.answersPerSecond?.median
  const toGet = (c?: CellSummary) => (c?.answersPerSecond && get ? c.answersPerSecond.median / get : null)
  const toPost = (c?: CellSummary) => (c?.answersPerSecond && post ? c.answersPerSecond.median / post : null)
  const rows = [
    cellRow('GET ceiling (GET /health/live)', cells.getCeiling, 'GET', toGet(cells.getCeiling)),
    cellRow('POST ceiling (POST /api/ceiling)', cells.postCeiling, 'GET', ratios.postCeilingToGetCeiling),
    cellRow('browse (cached product reads)', cells.browse, 'GET', toGet(cells.browse)),
    ...Object.entries(cells.stampedes).map(([strategy, cell]) =>
      cellRow(`stampede, ${strategy}`, cell, 'POST', toPost(cell)),
    ),
    cellRow(
      `large sale (${num(r.params.largeUnits)} units), redis-gate`,
      cells.largeSale,
      'POST',
      toPost(cells.largeSale),
    ),
  ]
  return `| cell | answers/s | x ceiling | p99 ms | durable units/s | sold all | generator µs per answer | invariants |
|---|---:|---:|---:|---:|---|---:|---|
${rows.join('\n')}`
}

/** The soak runs apart (`--soak 10`, loadtest/bench/soak.ts) and writes its own verdicts. */
const SOAK_TARGET =
  '| p99, heap and pool waits stay flat over a 10-minute soak at 70 % of the maximum | the same load over time: a line fitted through one value per minute must not drift by more than a tolerance of its level | [soak.md](soak.md) | run apart: `npm run bench -- --soak 10` |'

function targetsTable(ratios: BenchRatios): string {
  const mark = (ok: boolean | null) => (ok === null ? 'not measured' : ok ? 'met' : '**missed**')
  return `| target | yardstick, and why | measured | |
|---|---|---:|---|
${TARGETS.map((t) => {
  const value = ratios[t.field]
  return `| ${t.name} (\`${t.field}\` ${t.op} ${t.value}) | ${t.yardstick} | ${typeof value === 'number' ? f(value, 2) : 'n/a'} | ${mark(judge(t, ratios))} |`
}).join('\n')}
${SOAK_TARGET}`
}

function pgbenchSection(pg: PgbenchResult | null): string {
  if (!pg) return '_not run_'
  const row = (label: string, s: PgbenchScriptResult) =>
    `| ${label} | ${s.runs.map((x) => `${x.clients}: ${f(x.tps)}`).join(', ')} | **${f(s.best.tps)}** at ${s.best.clients} | ${f(s.best.latencyMs, 2)} | ${f(s.best.failed)} |`
  return `pgbench \`-M prepared\` on the same Postgres, in a database of its own made by the app's migrations
(loadtest/pgbench.ts holds the scripts); every client buys from the same sale, so every transaction
takes the same hot row, as in a stampede.

| script | tps by clients | best tps | ms per transaction (best) | failed |
|---|---|---:|---:|---:|
${row("purchase: the atomic path's statements, one transaction", pg.purchase)}
${row('purchase in one statement (the same effects, all or nothing)', pg.purchaseOneStatement)}
${row('single-row UPDATE (the yardstick of earlier runs)', pg.singleRowUpdate)}

What a durable COMMIT costs here: one client committing one-row UPDATEs makes **${f(pg.commit.perSecond)}
commits/s, ${f(pg.commit.latencyMs, 2)} ms each** (the WAL flush to disk is most of it). A row strategy holds the sale's
row from its UPDATE to the end of its COMMIT, flush included, so on one hot row it cannot sell more units
per second than commits can follow one another; the gate shares one flush among a whole batch.`
}

function matrixSection(r: BenchResults): string {
  if (r.matrix.length === 0) return '_not run_'
  const lines = r.matrix.map(({ strategy, rows, runs }) => {
    const orders = spreadOf(runs.map((x) => x.contention?.ordersPerSecond))
    const perOrder = (pick: (x: ScenarioRun) => number | undefined) =>
      f(
        runs.reduce((sum, x) => sum + (pick(x) ?? 0), 0) /
          Math.max(
            1,
            runs.reduce((sum, x) => sum + (x.contention?.orders ?? 0), 0),
          ),
        2,
      )
    return `| ${strategy} | ${rows} | ${runs.length} | ${spread(orders)} | ${spread(spreadOf(runs.map((x) => x.contention?.p50CreatedMs)), 1)} | ${spread(spreadOf(runs.map((x) => x.load.latencyMs.p99)), 1)} | ${perOrder((x) => x.metrics?.stockConflicts)} | ${perOrder((x) => x.metrics?.stockRetries)} | ${runs.every((x) => x.verification.ok) ? 'pass' : '**FAIL**'} |`
  })
  return `| strategy | sales | runs | orders/s | p50 of a 201 ms | p99 ms | conflicts per order | retries per order | invariants |
|---|---:|---:|---:|---:|---:|---:|---:|---|
${lines.join('\n')}`
}

function curveSection(r: BenchResults): string {
  if (r.curve.length === 0) return '_not run_'
  const rows = r.curve.map((run) => {
    const m = run.metrics
    const batch = m && m.batchesCommitted > 0 ? m.batchedOrders / m.batchesCommitted : null
    return `| ${run.load.connections} | ${f(batch, 1)} | ${f(run.sale?.p50CreatedMs, 1)} | ${f(run.sale?.durableUnitsPerSecond)} | ${run.verification.ok ? 'pass' : '**FAIL**'} |`
  })
  return `| connections | mean batch | p50 of a 201 ms | durable units/s | invariants |
|---:|---:|---:|---:|---|
${rows.join('\n')}`
}

function raceSection(r: BenchResults): string {
  if (r.races.length === 0) return '_not run_'
  const strategies = [...new Set(r.races.map((x) => x.strategy))]
  return `| strategy | runs | answers (each run) | conflicts | retries | wall time s | ok |
|---|---:|---|---:|---:|---:|---|
${strategies
  .map((s) => {
    const runs = r.races.filter((x) => x.strategy === s)
    const answers = [
      ...new Set(
        runs.map((x) =>
          Object.entries(x.answers)
            .map(([k, v]) => `${v} × ${k}`)
            .join(', '),
        ),
      ),
    ]
    return `| ${s} | ${runs.length} | ${answers.join('; ')} | ${f(runs.reduce((a, x) => a + x.conflicts, 0))} | ${f(runs.reduce((a, x) => a + x.retries, 0))} | ${spread(r.cells.races[s], 3)} | ${runs.every((x) => x.ok) ? 'yes' : '**no**'} |`
  })
  .join('\n')}`
}

function statementsSection(r: BenchResults): string {
  const parts = r.statements
    .filter((s) => s.statements.length > 0)
    .map((s) => {
      const total = s.statements.reduce((sum, st) => sum + st.totalMs, 0)
      const rows = s.statements.map(
        (st) =>
          `| \`${st.query.slice(0, 110).replace(/\|/g, '\\|')}${st.query.length > 110 ? '…' : ''}\` | ${f(st.calls)} | ${f(st.meanMs, 3)} | ${f(st.totalMs)} | ${f((100 * st.totalMs) / total)}% |`,
      )
      return `**${s.strategy}** (its last measured stampede)\n\n| statement | calls | mean ms | total ms | share |\n|---|---:|---:|---:|---:|\n${rows.join('\n')}`
    })
  return parts.length ? parts.join('\n\n') : '_pg_stat_statements is not available on this server_'
}

export function benchMarkdown(r: BenchResults, jsonReport: string): string {
  const { machine: m, params: p } = r
  const notesFile = path.join(REPO_ROOT, 'docs', 'benchmarks.md')
  const previous = existsSync(notesFile) ? readFileSync(notesFile, 'utf8') : ''
  const notes = /<!-- notes -->([\s\S]*?)<!-- \/notes -->/.exec(previous)?.[1] ?? '\n_No notes yet._\n'
  return `# Benchmarks

Written by \`npm run bench\` (scripts/bench.ts); every number below is from one run on one machine, and every
ratio is taken to a yardstick measured **in the same run**, because absolute numbers say more about the
machine than about the code. The run's JSON (${jsonReport}, git-ignored, with an HTML report beside it)
carries every ratio as a named field (\`ratios\`), and \`npm run bench -- --compare A.json B.json\` sets two
runs side by side. How the scenarios work: [load-testing.md](load-testing.md).

## The yardsticks

- **The GET ceiling**: \`GET /health/live\` through the same nginx and PM2 path with the same connections. The
  worker does no I/O: this is what the cheapest answer costs on this machine. Reads are measured against it.
- **The POST ceiling**: \`POST /api/ceiling\`, an authenticated JSON POST of a purchase's size (the buyer's own
  token, a fresh Idempotency-Key, \`{"quantity":1}\`) sent by the same buyer code as a purchase, through the
  same nginx location as purchases (the same \`limit_req\` zone and headers). The worker checks the token and
  the body and answers. Purchases are measured against it: what a purchase costs beyond it is the buying.
- **Postgres' own limit for our work**: pgbench on the same Postgres, prepared statements, the best of
  several client counts, running our own purchase SQL: the atomic path's statements in one transaction,
  and the best single statement with the same effects. Row strategies are measured against the second.
- **Durable** means durable: Postgres runs with ${m.postgresSettings} for the whole run (the stack's fast
  settings for tests and the demo are put back afterwards).

Every headline cell runs ${p.runs} ${p.runs === 1 ? 'time' : 'times'} after a ${p.warmupSeconds} s warm-up of the same load (workers restarted for a
new strategy start cold); tables show the median and, in brackets, the range. The load generator
(autocannon, one thread) shares the machine with what it measures: its CPU per answer is shown beside
each cell, so a cell that costs the generator more is not mistaken for a slower server.

## Targets

${targetsTable(r.ratios)}

## Machine

| | |
|---|---|
| date | ${m.date} |
| cores | ${m.cores} (${m.cpu}) |
| memory | ${m.memoryGiB} GiB |
| node | ${m.node} |
| os | ${m.os} |
| postgres | ${m.postgres}; ${m.postgresSettings} |
| load average before the run | ${m.loadBefore.join(', ')} (1, 5, 15 min) |

The load generator, nginx, ${m.apiInstances} API workers, the jobs process, Postgres (primary + replica) and Redis all
share these cores.

## Results

${p.connections} connections, ${p.duration} s per run; the stampede sells ${num(p.units)} units to ${num(p.users)} users (per-user limit
${STAMPEDE_DEFAULTS.limit}, ${STAMPEDE_DEFAULTS.replay * 100}% retries with the same Idempotency-Key, ${STAMPEDE_DEFAULTS.greedy * 100}% of turns by greedy users); the large sale
sells ${num(p.largeUnits)} units to ${num(p.largeUsers)} users in runs of at least 20 s. Answers/s counts every answer (201, 409 SOLD_OUT,
429 ...); reads are shown against the GET ceiling, purchases against the POST ceiling. Durable units/s = units in
fresh 201 answers / time of the last one, each 201 answered after its COMMIT.

${mainTable(r)}

## Postgres' own limit for a purchase

${pgbenchSection(r.pgbench)}

## The contention matrix

The same ${p.connections} connections buy one unit at a time from 1, 10 or 1,000 flash sales (stock rows), a random one
per request, ${p.matrixSeconds} s per run; no sale sells out, so every answer is a purchase decided under that contention.
The 1,000-sale cells of redis-gate and atomic run as often as the headline cells (${p.runs}; a target compares them), the others once.

${matrixSection(r)}

## The batching curve

The redis-gate path with 1 to ${Math.max(...r.curve.map((c) => c.load.connections), 0)} connections, ${p.curveSeconds} s each, on a sale that does not sell out:
more buyers at once make larger batches, and one COMMIT then carries more orders.

${curveSection(r)}

## The checkout race

${p.race.buyers} buyers, each with one unit in their cart, check out ${p.race.units} units at the same instant through nginx.

${raceSection(r)}

## Where Postgres' time goes

The heaviest statements of each strategy's last measured stampede, from pg_stat_statements.

${statementsSection(r)}

## Notes

Kept between runs (edit between the markers).

<!-- notes -->${notes}<!-- /notes -->
`
}
