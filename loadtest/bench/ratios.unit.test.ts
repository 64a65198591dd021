import { describe, expect, it } from 'vitest'
import type { ScenarioRun } from '../scenario.js'
import {
  benchRatios,
  compareReports,
  formatComparison,
  judge,
  spreadOf,
  summarizeCell,
  TARGETS,
  type BenchCells,
  type CellSummary,
} from './ratios.js'
import { linearFit, trendOf } from './trend.js'

/** A cell whose every run measured the same numbers (the arithmetic only looks at the medians). */
function cell(answersPerSecond: number, p99Ms: number, more: Partial<CellSummary> = {}): CellSummary {
  const one = (v: number) => ({ median: v, min: v, max: v, values: [v] })
  return {
    runs: 1,
    answersPerSecond: one(answersPerSecond),
    p99Ms: one(p99Ms),
    durableUnitsPerSecond: null,
    ordersPerSecond: null,
    generatorMicrosPerAnswer: null,
    invariantsHeld: true,
    soldAll: null,
    ...more,
  }
}

const run = (rate: number, p99: number, extra: Partial<ScenarioRun> = {}) =>
  ({
    load: { requestsPerSecond: rate, latencyMs: { p99 }, answered: 1000, generatorCpuSeconds: 0.05 },
    sale: null,
    verification: { ok: true },
    ...extra,
  }) as unknown as ScenarioRun

describe('the median and spread of a cell', () => {
  it('when three runs are measured, then the middle one is the median and the range is kept', () => {
    expect(spreadOf([1200, 1000, 1100])).toEqual({
      median: 1100,
      min: 1000,
      max: 1200,
      values: [1200, 1000, 1100],
    })
  })

  it('when an even number of runs is measured, then the median is the mean of the middle two', () => {
    expect(spreadOf([4, 1, 3, 2])?.median).toBe(2.5)
  })

  it('when a run measured nothing, then it is left out, and with nothing left there is no spread', () => {
    expect(spreadOf([null, 5, Number.NaN, undefined])?.values).toEqual([5])
    expect(spreadOf([null, undefined])).toBeNull()
  })

  it('when runs are summarised, then the generator CPU per answer is in microseconds and a failed run shows', () => {
    const summary = summarizeCell([
      run(100, 10),
      run(300, 30, { verification: { ok: false } as never }),
      run(200, 20),
    ])
    expect(summary.answersPerSecond?.median).toBe(200)
    expect(summary.p99Ms).toMatchObject({ median: 20, min: 10, max: 30 })
    expect(summary.generatorMicrosPerAnswer?.median).toBe(50)
    expect(summary.invariantsHeld).toBe(false)
    expect(summary.soldAll).toBeNull()
  })
})

describe('the ratios of one run', () => {
  const cells: BenchCells = {
    getCeiling: cell(10_000, 20),
    postCeiling: cell(8_000, 25),
    browse: cell(9_500, 18),
    stampedes: {
      'redis-gate': cell(6_000, 40, { durableUnitsPerSecond: spreadOf([2_000]) }),
      atomic: cell(1_000, 200, { durableUnitsPerSecond: spreadOf([600]), soldAll: true }),
      pessimistic: cell(500, 400, { durableUnitsPerSecond: spreadOf([300]), soldAll: false }),
    },
    largeSale: cell(5_000, 50, { durableUnitsPerSecond: spreadOf([4_400]) }),
    thousandSales: {
      'redis-gate': cell(700, 90, { ordersPerSecond: spreadOf([700]) }),
      atomic: cell(500, 90, { ordersPerSecond: spreadOf([500]) }),
    },
    races: { atomic: spreadOf([0.2, 0.25, 0.21]), pessimistic: spreadOf([0.5, 0.4, 0.45]) },
  }
  const ratios = benchRatios(cells, { singleRowUpdate: 3_000, purchase: 800, purchaseOneStatement: 1_000 }, 0)

  it('when reads and purchases are measured, then reads go to the GET ceiling and purchases to the POST ceiling', () => {
    expect(ratios.browseToGetCeiling).toBeCloseTo(0.95)
    expect(ratios.gateAttemptsToGetCeiling).toBeCloseTo(0.6)
    expect(ratios.gateP99ToGetCeilingP99).toBeCloseTo(2)
    expect(ratios.postCeilingToGetCeiling).toBeCloseTo(0.8)
    expect(ratios.attemptsToPostCeiling.atomic).toBeCloseTo(0.125)
    expect(ratios.p99ToPostCeilingP99['redis-gate']).toBeCloseTo(1.6)
    expect(ratios.gateLargeSaleUnitsToPostCeiling).toBeCloseTo(0.55)
  })

  it('when pgbench ran our purchase, then row strategies go to its one-statement purchase, and the old names to the single-row UPDATE', () => {
    expect(ratios.atomicUnitsToPgbenchOneStatement).toBeCloseTo(0.6)
    expect(ratios.pessimisticUnitsToPgbenchOneStatement).toBeCloseTo(0.3)
    expect(ratios.atomicUnitsToPgbenchPurchase).toBeCloseTo(0.75)
    expect(ratios.pgbenchPurchaseToOneStatement).toBeCloseTo(0.8)
    expect(ratios.atomicUnitsToPgbench).toBeCloseTo(0.2)
    expect(ratios.optimisticUnitsToPgbenchOneStatement).toBeNull()
  })

  it('when the race ran three times per strategy, then the slowest strategy median counts', () => {
    expect(ratios.slowestRaceSeconds).toBeCloseTo(0.45)
    expect(ratios.gateToAtomicAt1000Sales).toBeCloseTo(1.4)
  })

  it('when the targets are judged, then each is met, missed, or not measured', () => {
    const verdict = (field: string) =>
      judge(
        TARGETS.find((t) => t.field === field)!,
        ratios,
      )
    expect(verdict('browseToGetCeiling')).toBe(true)
    expect(verdict('gateAttemptsToGetCeiling')).toBe(false)
    expect(verdict('gateLargeSaleUnitsToPostCeiling')).toBe(true)
    expect(verdict('pessimisticUnitsToPgbenchOneStatement')).toBe(true)
    expect(verdict('slowestRaceSeconds')).toBe(false)
    expect(verdict('invariantViolations')).toBe(true)
    const unmeasured = benchRatios({ stampedes: {}, thousandSales: {}, races: {} }, null, 1)
    expect(
      judge(
        TARGETS.find((t) => t.field === 'browseToGetCeiling')!,
        unmeasured,
      ),
    ).toBeNull()
    expect(
      judge(
        TARGETS.find((t) => t.field === 'invariantViolations')!,
        unmeasured,
      ),
    ).toBe(false)
  })

  it('when a yardstick is zero or missing, then the ratio is null rather than infinite', () => {
    const broken = benchRatios(
      { getCeiling: cell(0, 0), stampedes: {}, thousandSales: {}, races: {} },
      null,
      0,
    )
    expect(broken.browseToGetCeiling).toBeNull()
    expect(broken.gateP99ToGetCeilingP99).toBeNull()
  })
})

describe('comparing two runs', () => {
  const before = {
    machine: { date: 'before' },
    ratios: { browseToCeiling: 0.7, atomicSoldAll: true, gateAttemptsToCeiling: 0.28 },
  }
  const after = {
    machine: { date: 'after' },
    ratios: { browseToCeiling: 0.91, atomicSoldAll: true, attemptsToPostCeiling: { atomic: 0.5 } },
    cells: {
      getCeiling: { answersPerSecond: { median: 9000, min: 8800, max: 9100, values: [1, 2, 3] }, runs: 3 },
    },
  }

  it('when both runs name a ratio, then the change is shown; a ratio only one run has shows a dash', () => {
    const rows = compareReports(before, after)
    const row = (name: string) => rows.find((r) => r.name === name)
    expect(row('ratios.browseToCeiling')).toMatchObject({ a: 0.7, b: 0.91 })
    expect(row('ratios.browseToCeiling')!.change).toBeCloseTo(0.3)
    expect(row('ratios.gateAttemptsToCeiling')).toMatchObject({ a: 0.28, b: null, change: null })
    expect(row('ratios.attemptsToPostCeiling.atomic')).toMatchObject({ a: null, b: 0.5 })
    expect(row('ratios.atomicSoldAll')).toMatchObject({ a: true, b: true, change: null })
    // A spread counts by its median, and its runs' values are not compared one by one.
    expect(row('cells.getCeiling.answersPerSecond')).toMatchObject({ a: null, b: 9000 })
    expect(rows.some((r) => r.name.includes('values'))).toBe(false)
  })

  it('when printed, then every row is one line with both values and the change in percent', () => {
    const text = formatComparison(compareReports(before, after), ['before', 'after'])
    const line = text.split('\n').find((l) => l.startsWith('ratios.browseToCeiling'))!
    expect(line).toMatch(/0\.700\s+0\.910\s+\+30\.0%$/)
    expect(text.split('\n')[0]).toMatch(/before\s+after\s+change$/)
  })
})

describe('whether a soak series is flat', () => {
  it('when the points lie on a line, then the fit finds its slope with r² = 1', () => {
    expect(linearFit([0, 1, 2, 3].map((x) => ({ x, y: 2 * x + 1 })))).toEqual({
      slope: 2,
      intercept: 1,
      r2: 1,
    })
    expect(linearFit([{ x: 1, y: 1 }])).toBeNull()
  })

  it('when the heap grows 5 % a minute for ten minutes, then it is not flat', () => {
    const heap = Array.from({ length: 10 }, (_, m) => 100 * (1 + 0.05 * m))
    expect(trendOf(heap, 0.1, 50)).toMatchObject({ flat: false })
  })

  it('when a p99 only wanders around its level, then it is flat', () => {
    const p99 = [40, 44, 38, 41, 45, 39, 42, 40, 43, 41]
    expect(trendOf(p99, 0.25, 20)?.flat).toBe(true)
  })

  it('when the level is tiny, then the floor keeps a 1 ms wander from counting as drift', () => {
    expect(trendOf([1, 1.5, 2, 2.5], 0.25, 0)?.flat).toBe(false)
    expect(trendOf([1, 1.5, 2, 2.5], 0.25, 20)?.flat).toBe(true)
  })
})
