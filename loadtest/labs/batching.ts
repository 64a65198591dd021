import type { ScenarioRun } from '../scenario.js'
import { stampede, STAMPEDE_DEFAULTS, type StampedeParams } from '../scenarios/stampede.js'
import type { Lab } from './lab.js'

// Lab 4, batching: the flash-sale stampede on the redis-gate path, once with every order in a
// transaction of its own (ORDER_BATCH_MAX=1), once with the default batcher. What it compares is the
// ratio of durable units/s, never an absolute number: that depends on the machine.

/** The real batcher must sell at least this many times faster than one order per transaction. */
const MIN_RATIO = 1.5

const FULL: StampedeParams = { ...STAMPEDE_DEFAULTS, units: 1000, users: 2000, connections: 200, duration: 8 }
const QUICK: StampedeParams = { ...STAMPEDE_DEFAULTS, units: 500, users: 1000, connections: 100, duration: 5 }

const failedChecks = (run: ScenarioRun) =>
  run.verification.checks
    .filter((c) => !c.ok)
    .map((c) => `${c.name} (${c.detail})`)
    .join('; ')

function summary(run: ScenarioRun) {
  const m = run.metrics
  const meanBatch = m && m.batchesCommitted > 0 ? m.batchedOrders / m.batchesCommitted : null
  return {
    unitsPerSecond: run.sale?.durableUnitsPerSecond ?? 0,
    meanBatch,
    line: (what: string) =>
      `${what}: ${run.sale?.taken ?? 0}/${run.sale?.units ?? 0} units taken, ` +
      `${Math.round(run.sale?.durableUnitsPerSecond ?? 0)} durable units/s, ` +
      `${m?.batchesCommitted ?? '?'} batches (mean ${meanBatch === null ? '?' : meanBatch.toFixed(1)} orders), ` +
      `invariants ${run.verification.ok ? 'pass' : `FAIL: ${failedChecks(run)}`}`,
  }
}

export const batching: Lab = {
  name: 'batching',
  title:
    'one order per transaction (ORDER_BATCH_MAX=1) against the batcher: durable units/s on the gate path',
  async run(ctx) {
    const params = ctx.quick ? QUICK : FULL
    const scenario = { target: ctx.target, admin: ctx.admin, log: ctx.log }
    ctx.log('workers restart with ORDER_BATCH_MAX=1')
    await ctx.withAppEnv({ ORDER_BATCH_MAX: '1' })
    const single = summary(await stampede(scenario, params))
    ctx.log(`workers restart with the default ORDER_BATCH_MAX`)
    await ctx.withAppEnv({})
    const batchedRun = await stampede(scenario, params)
    const batched = summary(batchedRun)
    const ratio = single.unitsPerSecond > 0 ? batched.unitsPerSecond / single.unitsPerSecond : Infinity
    ctx.log(`ratio: ${ratio.toFixed(1)} x the durable units/s of one order per transaction`)
    return {
      broken: { line: single.line('ORDER_BATCH_MAX=1'), asExpected: ratio >= MIN_RATIO },
      fixed: {
        line: `${batched.line('default batcher')}; ${ratio.toFixed(1)} x`,
        asExpected: batchedRun.verification.ok && ratio >= MIN_RATIO && (batched.meanBatch ?? 0) > 1,
      },
    }
  },
}
