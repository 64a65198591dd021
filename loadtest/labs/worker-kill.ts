import { setTimeout as sleep } from 'node:timers/promises'
import type { SaleAudit } from '../admin.js'
import { createFaultLibrary, seededRandom } from '../faults/fault-library.js'
import { runLoad } from '../load.js'
import { openSale, saleEvidence } from '../scenarios/common.js'
import { verifyInvariants } from '../verify.js'
import { LABS_APP_ENV, type Lab, type LabContext } from './lab.js'

// Lab 5, worker kill: a PM2 worker SIGKILLed in the middle of a sale on the redis-gate path. The buyers
// it had admitted hold gate tokens that will never become orders. The broken run has no reconciler to
// speak of (RECONCILE_INTERVAL_MS = 10 minutes); the fixed run has the labs' 500 ms. Both then wait past
// the tokens' deadline (GATE_TOKEN_TTL_MS) and run the verifier. The kill is the fault library's.

const TOKEN_TTL_MS = Number(LABS_APP_ENV.GATE_TOKEN_TTL_MS)

const auditLine = (a: SaleAudit) =>
  `gate ${a.gate}, in flight ${a.inFlight}, Postgres available ${a.available}, drift ${a.drift}`

async function killMidSale(ctx: LabContext, seed: number) {
  const scenario = { target: ctx.target, admin: ctx.admin, log: ctx.log }
  // More units than the buyers may take (4,000 x 2), and more than 3 s of buying can sell: the sale and
  // the buyers' allowance both last past the kill, so the killed worker has admitted buyers in flight.
  const { sale, users, buyers } = await openSale(
    scenario,
    { units: 10_000, users: 4000, limit: 2, duration: 3 },
    { replayShare: 0, greedyShare: 0 },
  )
  let startedAt = Date.now()
  const faults = createFaultLibrary({
    options: ctx.options,
    handles: ctx.handles,
    random: seededRandom(seed),
    elapsedMs: () => Date.now() - startedAt,
    remaining: () => undefined,
    log: ctx.log,
  })
  const load = runLoad({
    title: 'worker-kill',
    url: ctx.target.nginxUrl,
    connections: 100,
    durationSeconds: 3,
    requests: [
      {
        setupRequest: (request, context) => buyers.next(request, context, sale.id),
        onResponse: (status, body, context, headers) => buyers.record(status, body, headers, context),
      },
    ],
    onStart: (at) => {
      startedAt = at
      buyers.start(at)
    },
  })
  await faults.waitForRandomMoment(1000, 1500)
  await faults.killWorker()
  const stats = await load
  // The surviving worker's batches commit within milliseconds; what is still in flight now is the dead one's.
  await sleep(500)
  const right = await ctx.admin.audit(sale.id)
  ctx.log(`right after the kill: ${auditLine(right)}`)
  await sleep(TOKEN_TTL_MS + 1500)
  const verification = await verifyInvariants({
    db: ctx.target.db,
    admin: ctx.admin,
    evidence: saleEvidence([sale.id], users, buyers, stats),
    quietMs: 1000,
    sweepIntervalMs: ctx.target.config.SWEEP_INTERVAL_MS,
  })
  const later = verification.audit ?? (await ctx.admin.audit(sale.id))
  const i3 = verification.checks.find((c) => c.invariant === 'I3')!
  return { right, later, i3, verification }
}

export const workerKill: Lab = {
  name: 'worker-kill',
  title: 'a worker SIGKILLed mid-sale strands its gate tokens; the reconciler gives them back',
  async run(ctx) {
    ctx.log('workers and jobs restart with RECONCILE_INTERVAL_MS=600000 (no reconciler in practice)')
    await ctx.withAppEnv({ RECONCILE_INTERVAL_MS: '600000' })
    // A kill that lands between two of the victim's batches strands nothing: that run shows nothing
    // to repair, so the kill is tried again on a fresh sale (at most three times).
    let broken = await killMidSale(ctx, 1)
    let kills = 1
    while ((broken.right.inFlight ?? 0) === 0 && kills < 3) {
      ctx.log('the kill stranded no token (it fell between two batches): once more')
      broken = await killMidSale(ctx, 1 + kills++)
    }
    ctx.log(`workers and jobs restart with RECONCILE_INTERVAL_MS=${LABS_APP_ENV.RECONCILE_INTERVAL_MS}`)
    await ctx.withAppEnv({})
    const fixed = await killMidSale(ctx, 10)
    const line = (r: typeof broken) =>
      `5 s after the load ended: ${auditLine(r.later)}; ` +
      `verifier ${r.i3.ok ? 'pass' : 'FAIL'}: ${r.i3.name} (${r.i3.detail})`
    return {
      broken: {
        line: `no reconciler (${kills} kill${kills > 1 ? 's' : ''}): ${line(broken)}`,
        asExpected: (broken.right.inFlight ?? 0) > 0 && (broken.later.inFlight ?? 0) > 0 && !broken.i3.ok,
      },
      fixed: {
        line: `reconciler every ${LABS_APP_ENV.RECONCILE_INTERVAL_MS} ms: ${line(fixed)}`,
        // The lab is about tokens and stock (I1, I3); the other invariants are other labs' business.
        asExpected:
          fixed.later.inFlight === 0 &&
          fixed.later.drift === 0 &&
          fixed.verification.checks.every((c) => c.ok || (c.invariant !== 'I1' && c.invariant !== 'I3')),
      },
    }
  },
}
