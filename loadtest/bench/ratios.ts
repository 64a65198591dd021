import type { ScenarioRun } from '../scenario.js'

// The benchmark's arithmetic, apart from running anything: the median and spread of a cell's repeated
// runs, every target as a named ratio of one run's numbers, each target judged, and two runs compared.
// scripts/bench.ts measures; this file decides what the measurements say (loadtest/bench/ratios.unit.test.ts).

/** A number measured several times: the median is reported, the spread says how much to trust it. */
export interface Spread {
  median: number
  min: number
  max: number
  values: number[]
}

/** The median and range of the numbers given (nulls and NaN left out); null when none is left. */
export function spreadOf(values: readonly (number | null | undefined)[]): Spread | null {
  const kept = values.filter((v): v is number => typeof v === 'number' && Number.isFinite(v))
  if (kept.length === 0) return null
  const sorted = [...kept].sort((a, b) => a - b)
  const middle = sorted.length / 2
  const median = sorted.length % 2 ? sorted[Math.floor(middle)]! : (sorted[middle - 1]! + sorted[middle]!) / 2
  return { median, min: sorted[0]!, max: sorted.at(-1)!, values: kept }
}

/** a / b, or null when either is missing or b is zero. */
export function ratio(a: number | null | undefined, b: number | null | undefined): number | null {
  if (a === null || a === undefined || b === null || b === undefined || b === 0) return null
  if (!Number.isFinite(a) || !Number.isFinite(b)) return null
  return a / b
}

/** One cell of the bench (a scenario under one setting), run one or more times. */
export interface CellSummary {
  runs: number
  answersPerSecond: Spread | null
  p99Ms: Spread | null
  /** Units in fresh 201s per second up to the last of them (sales only). */
  durableUnitsPerSecond: Spread | null
  /** Fresh 201s per second (contention cells only). */
  ordersPerSecond: Spread | null
  /** The load generator's own CPU per answer (µs): it shares the machine with what it measures. */
  generatorMicrosPerAnswer: Spread | null
  /** Every run kept its invariants. */
  invariantsHeld: boolean
  /** Every run's sale sold all its units (sales only; null otherwise). */
  soldAll: boolean | null
}

export function summarizeCell(runs: readonly ScenarioRun[]): CellSummary {
  const sales = runs.filter((r) => r.sale)
  return {
    runs: runs.length,
    answersPerSecond: spreadOf(runs.map((r) => r.load.requestsPerSecond)),
    p99Ms: spreadOf(runs.map((r) => r.load.latencyMs.p99)),
    durableUnitsPerSecond: spreadOf(runs.map((r) => r.sale?.durableUnitsPerSecond)),
    ordersPerSecond: spreadOf(runs.map((r) => r.contention?.ordersPerSecond)),
    generatorMicrosPerAnswer: spreadOf(
      runs.map((r) => (r.load.answered > 0 ? (r.load.generatorCpuSeconds * 1e6) / r.load.answered : null)),
    ),
    invariantsHeld: runs.every((r) => r.verification.ok),
    soldAll: sales.length === 0 ? null : sales.every((r) => r.sale!.taken === r.sale!.units),
  }
}

/** The headline cells of one bench run, each the summary of its repeated runs. */
export interface BenchCells {
  getCeiling?: CellSummary
  postCeiling?: CellSummary
  browse?: CellSummary
  /** The stampede (a whole sale, sold-out answers included) per stock strategy. */
  stampedes: Record<string, CellSummary>
  /** The redis-gate sale of 20,000 units: the write path on its own. */
  largeSale?: CellSummary
  /** Buyers spread over 1,000 sales, per strategy. */
  thousandSales: Record<string, CellSummary>
  /** Wall time of the checkout race (s), per strategy. */
  races: Record<string, Spread | null>
}

/** Transactions per second of pgbench's best client count, per script. */
export interface PgbenchYardsticks {
  singleRowUpdate: number | null
  purchase: number | null
  purchaseOneStatement: number | null
}

const median = (s: Spread | null | undefined) => s?.median ?? null

/** Every target of docs/benchmarks.md as a named number (JSON `ratios`), and the numbers earlier runs named. */
export function benchRatios(cells: BenchCells, pgbench: PgbenchYardsticks | null, violations: number) {
  const getRate = median(cells.getCeiling?.answersPerSecond)
  const getP99 = median(cells.getCeiling?.p99Ms)
  const postRate = median(cells.postCeiling?.answersPerSecond)
  const postP99 = median(cells.postCeiling?.p99Ms)
  const stampede = (strategy: string) => cells.stampedes[strategy]
  const units = (strategy: string) => median(stampede(strategy)?.durableUnitsPerSecond)
  const raceMedians = Object.values(cells.races)
    .map(median)
    .filter((v): v is number => v !== null)
  const perStrategy = (f: (strategy: string) => number | null) =>
    Object.fromEntries(Object.keys(cells.stampedes).map((s) => [s, f(s)]))
  return {
    // Reads against the GET ceiling.
    browseToGetCeiling: ratio(median(cells.browse?.answersPerSecond), getRate),
    // The whole stampede (sold-out answers included) against the GET ceiling: after the sell-out, a "no"
    // should cost no more than the cheapest GET.
    gateAttemptsToGetCeiling: ratio(median(stampede('redis-gate')?.answersPerSecond), getRate),
    gateP99ToGetCeilingP99: ratio(median(stampede('redis-gate')?.p99Ms), getP99),
    // Purchases against the POST ceiling.
    postCeilingToGetCeiling: ratio(postRate, getRate),
    attemptsToPostCeiling: perStrategy((s) => ratio(median(stampede(s)?.answersPerSecond), postRate)),
    p99ToPostCeilingP99: perStrategy((s) => ratio(median(stampede(s)?.p99Ms), postP99)),
    gateLargeSaleUnitsToPostCeiling: ratio(median(cells.largeSale?.durableUnitsPerSecond), postRate),
    // Row strategies against Postgres' own limit for the same work.
    atomicUnitsToPgbenchOneStatement: ratio(units('atomic'), pgbench?.purchaseOneStatement),
    pessimisticUnitsToPgbenchOneStatement: ratio(units('pessimistic'), pgbench?.purchaseOneStatement),
    optimisticUnitsToPgbenchOneStatement: ratio(units('optimistic'), pgbench?.purchaseOneStatement),
    atomicUnitsToPgbenchPurchase: ratio(units('atomic'), pgbench?.purchase),
    pgbenchPurchaseToOneStatement: ratio(pgbench?.purchase, pgbench?.purchaseOneStatement),
    gateToAtomicAt1000Sales: ratio(
      median(cells.thousandSales['redis-gate']?.ordersPerSecond),
      median(cells.thousandSales.atomic?.ordersPerSecond),
    ),
    slowestRaceSeconds: raceMedians.length ? Math.max(...raceMedians) : null,
    atomicSoldAll: stampede('atomic')?.soldAll ?? null,
    pessimisticSoldAll: stampede('pessimistic')?.soldAll ?? null,
    invariantViolations: violations,
    // The names of earlier runs (GET ceiling and pgbench's single-row UPDATE), kept for comparison.
    browseToCeiling: ratio(median(cells.browse?.answersPerSecond), getRate),
    gateAttemptsToCeiling: ratio(median(stampede('redis-gate')?.answersPerSecond), getRate),
    gateP99ToCeiling: ratio(median(stampede('redis-gate')?.p99Ms), getP99),
    gateLargeSaleUnitsToPgbench: ratio(
      median(cells.largeSale?.durableUnitsPerSecond),
      pgbench?.singleRowUpdate,
    ),
    atomicUnitsToPgbench: ratio(units('atomic'), pgbench?.singleRowUpdate),
    pessimisticUnitsToPgbench: ratio(units('pessimistic'), pgbench?.singleRowUpdate),
    optimisticUnitsToPgbench: ratio(units('optimistic'), pgbench?.singleRowUpdate),
  }
}

export type BenchRatios = ReturnType<typeof benchRatios>

export interface Target {
  /** What is promised, in words. */
  name: string
  /** The ratio that judges it (a field of BenchRatios). */
  field: keyof BenchRatios
  op: '>=' | '<=' | '<' | '='
  value: number
  /** What the number is measured against, and why that is the right yardstick. */
  yardstick: string
}

export const TARGETS: Target[] = [
  {
    name: 'cached product reads reach 0.9 of the GET ceiling',
    field: 'browseToGetCeiling',
    op: '>=',
    value: 0.9,
    yardstick:
      'the GET ceiling: a cached read is a GET whose answer is already in memory, so all it may add to the cheapest GET through the same path is the cache lookup',
  },
  {
    name: 'a whole flash-sale stampede (sold-out answers included) reaches the GET ceiling',
    field: 'gateAttemptsToGetCeiling',
    op: '>=',
    value: 1,
    yardstick:
      'the GET ceiling: most of a stampede arrives after the last unit, and a "sold out" known in advance costs no more than the cheapest GET when the edge answers it',
  },
  {
    name: "the stampede's p99 is no worse than the GET ceiling's",
    field: 'gateP99ToGetCeilingP99',
    op: '<=',
    value: 1,
    yardstick: "the GET ceiling's p99 in the same run: the same reasoning for the slowest answers",
  },
  {
    name: 'redis-gate durable units/s in a 20,000-unit sale reach 0.5 of the POST ceiling',
    field: 'gateLargeSaleUnitsToPostCeiling',
    op: '>=',
    value: 0.5,
    yardstick:
      'the POST ceiling: a unit needs one authenticated JSON POST through the purchase location; with write batching Postgres should add little to it',
  },
  {
    name: "atomic durable units/s reach 0.5 of pgbench's one-statement purchase",
    field: 'atomicUnitsToPgbenchOneStatement',
    op: '>=',
    value: 0.5,
    yardstick:
      "pgbench running the best single-statement purchase (same tables, same effects) on the same Postgres: a row strategy commits one purchase per transaction, and that is Postgres' own limit for it",
  },
  {
    name: "pessimistic durable units/s reach 0.3 of pgbench's one-statement purchase",
    field: 'pessimisticUnitsToPgbenchOneStatement',
    op: '>=',
    value: 0.3,
    yardstick: 'the same; a lock held while the app decides costs more, hence the lower bar',
  },
  {
    name: 'redis-gate sells at least as fast as atomic when buyers spread over 1,000 sales',
    field: 'gateToAtomicAt1000Sales',
    op: '>=',
    value: 1,
    yardstick:
      'atomic in the same run: with no hot row, a row strategy no longer waits on a lock, and the gate must still not lose',
  },
  {
    name: 'the 300-buyer, 20-unit checkout race ends in under 0.3 s for every strategy',
    field: 'slowestRaceSeconds',
    op: '<',
    value: 0.3,
    yardstick:
      'wall time from the first request to the last answer: every loser must be told OUT_OF_STOCK at once, not after a lock timeout',
  },
  {
    name: 'no invariant is violated in any run',
    field: 'invariantViolations',
    op: '=',
    value: 0,
    yardstick: 'the verifier after every run (I1–I5, docs/load-testing.md)',
  },
]

/** true (met), false (missed) or null (not measured in this run). */
export function judge(target: Target, ratios: BenchRatios): boolean | null {
  const value = ratios[target.field]
  if (typeof value !== 'number') return null
  switch (target.op) {
    case '>=':
      return value >= target.value
    case '<=':
      return value <= target.value
    case '<':
      return value < target.value
    case '=':
      return value === target.value
  }
}

/** What --compare reads of a bench report (loadtest/results/bench-*.json). */
export interface BenchReportFile {
  machine?: { date?: string }
  ratios?: Record<string, unknown>
  cells?: Record<string, unknown>
}

export interface ComparisonRow {
  name: string
  a: number | boolean | null
  b: number | boolean | null
  /** b / a - 1, for numbers on both sides. */
  change: number | null
}

/**
 * Every ratio and every cell median of two reports, side by side: the names of both (a report from
 * before a ratio existed shows null for it), nested objects flattened to dotted names.
 */
export function compareReports(a: BenchReportFile, b: BenchReportFile): ComparisonRow[] {
  const left = flatten({ ratios: a.ratios ?? {}, cells: a.cells ?? {} })
  const right = flatten({ ratios: b.ratios ?? {}, cells: b.cells ?? {} })
  const names = [...new Set([...left.keys(), ...right.keys()])]
  return names.map((name) => {
    const x = left.get(name) ?? null
    const y = right.get(name) ?? null
    const change = typeof x === 'number' && typeof y === 'number' && x !== 0 ? y / x - 1 : null
    return { name, a: x, b: y, change }
  })
}

/** Numbers and booleans of a nested object by dotted name; a Spread counts by its median alone. */
function flatten(value: unknown, prefix = '', into = new Map<string, number | boolean>()) {
  if (typeof value === 'number' || typeof value === 'boolean') into.set(prefix, value)
  else if (value && typeof value === 'object' && !Array.isArray(value)) {
    const record = value as Record<string, unknown>
    if (typeof record.median === 'number' && Array.isArray(record.values)) into.set(prefix, record.median)
    else
      for (const [key, inner] of Object.entries(record))
        if (key !== 'values') flatten(inner, prefix ? `${prefix}.${key}` : key, into)
  }
  return into
}

/** The comparison as an aligned text table. */
export function formatComparison(rows: ComparisonRow[], labels: [string, string]): string {
  const show = (v: number | boolean | null) =>
    v === null ? '-' : typeof v === 'boolean' ? String(v) : Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(3)
  const lines = rows.map((r) => [
    r.name,
    show(r.a),
    show(r.b),
    r.change === null ? '' : `${r.change >= 0 ? '+' : ''}${(r.change * 100).toFixed(1)}%`,
  ])
  const header = ['', labels[0], labels[1], 'change']
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)))
  const format = (cols: string[]) =>
    cols.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ')
  return [format(header), ...lines.map(format)].join('\n')
}
