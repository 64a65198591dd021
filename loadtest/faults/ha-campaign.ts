import { createLoadTestUsers } from '../../src/auth/load-test-users.js'
import { httpStatus, waitFor } from '../../scripts/stack/process.js'
import {
  haAppSetup,
  haHandles,
  haProfile,
  haStatus,
  haUp,
  haUrls,
  type HaHandles,
  type HaOptions,
} from '../../scripts/stack/ha/ha-stack.js'
import { haHost, HA_PORTS, hostsWithRole } from '../../scripts/stack/ha/topology.js'
import { AdminApi } from '../admin.js'
import { createBuyers } from '../buyers.js'
import { runLoadAlongside, type LoadRequest } from '../load.js'
import { watchSale } from '../scenarios/common.js'
import { LOAD_TEST_APP_LIMITS, LOAD_TEST_NGINX_LIMITS, remoteTarget, type LoadTarget } from '../target.js'
import { percentiles } from '../scenarios/common.js'
import type { Check } from '../verify.js'
import {
  CAMPAIGN_APP_ENV,
  judge,
  type CaseLoad,
  type CaseResult,
  type JudgedContext,
  type Observation,
  type Observed,
} from './campaign.js'
import { seededRandom, type FaultEvent } from './fault-library.js'

// The HA profile's fault cases (`npm run faults -- --profile ha [case ...]`): a flash sale through nginx
// on the multi-host profile, one failover injected while it runs, the cluster made whole again, then the
// same invariant verifier and shared checks as the single-host campaign (campaign.ts). Each case reports
// how long the sale took to recover: from the fault to the first 201 after both the last 5xx and the
// first stretch of a second or more without any 201 (outageAfter). "The first 201 after the fault" alone
// would call a failover over before it began: connections of a killed postmaster may still commit for a
// moment, and a buyer's replay may be answered from Redis.

export interface HaCaseContext extends JudgedContext {
  options: HaOptions
  handles: HaHandles
  random: () => number
  /** ms since the load started. */
  elapsedMs(): number
  /** Records the fault's moment (recovery is measured from it) and what it was. */
  fault(what: string): void
  /** Records a later event of the case (a new leader seen, a partition healed ...). */
  note(what: string): void
  /** Waits until a random moment between `fromMs` and `toMs` after the load started. */
  waitForRandomMoment(fromMs: number, toMs: number): Promise<void>
}

export interface HaFaultCase {
  name: string
  title: string
  fault: string
  promise: string
  limits: string
  load?: Partial<CaseLoad>
  /** Runs while the load runs: the fault, and what the case watches while it lasts. */
  inject(ctx: HaCaseContext, notes: Observation['notes']): Promise<void>
  /** After the load: brings every server of the profile back into the cluster for the next case. */
  restore(ctx: HaCaseContext, notes: Observation['notes']): Promise<void>
  check?(ctx: HaCaseContext, seen: Observation): Promise<Check[]> | Check[]
  /** After the run, send every purchase key of it again and hold each answer against Postgres (resendEveryKey). */
  resendEveryKey?: boolean
}

export interface HaCaseResult extends CaseResult {
  /** From the fault to the first 201 after the last 5xx and after the sale stopped, if it did (ms). */
  recoveryMs: number | null
  /** The first stretch after the fault of a second or more without a 201: the sale stopped (ms; 0: never). */
  outageMs: number | null
  /** 5xx answers after the fault. */
  outage5xx: number
}

/** A stretch this long without a 201 is an outage: a sale at a few hundred purchases a second has one every few ms. */
export const OUTAGE_GAP_MS = 1000

/**
 * What a fault cost, from the times (ms) fresh 201s and 5xx were answered after it:
 * - `outageMs`: the first stretch of OUTAGE_GAP_MS or more without a 201 (the sale stopped), else 0;
 * - `recoveryMs`: from the fault to the first 201 after both that stretch and the last 5xx (the sale
 *   sells again and nobody is failed any more); 0 when neither happened; null when no 201 came after;
 * - `outage5xx`: every 5xx answered after the fault.
 */
export function outageAfter(faultAt: number, oks: number[], failures: number[]) {
  const after = oks.filter((t) => t >= faultAt).sort((a, b) => a - b)
  const failed = failures.filter((t) => t >= faultAt)
  const points = [faultAt, ...after]
  const gap = points.findIndex((t, i) => i > 0 && t - points[i - 1]! >= OUTAGE_GAP_MS)
  const outageMs = gap < 0 ? 0 : points[gap]! - points[gap - 1]!
  const troubleEnds = Math.max(gap < 0 ? faultAt : points[gap - 1]!, ...failed)
  if (troubleEnds === faultAt && gap < 0) return { recoveryMs: 0, outageMs: 0, outage5xx: 0 }
  const recovered = after.find((t) => t > troubleEnds)
  return {
    recoveryMs: recovered === undefined ? null : recovered - faultAt,
    outageMs: recovered === undefined ? null : outageMs,
    outage5xx: failed.length,
  }
}

/** A third of the single-host campaign's rate: three app hosts with one worker each share two cores. */
const HA_LOAD: CaseLoad = {
  kind: 'purchase',
  connections: 60,
  durationSeconds: 30,
  rate: 300,
  users: 3000,
  limit: 2,
}

export const haCampaignOptions = (env: NodeJS.ProcessEnv): HaOptions =>
  haProfile(
    { ...LOAD_TEST_NGINX_LIMITS, ...env },
    { ...LOAD_TEST_APP_LIMITS, ...CAMPAIGN_APP_ENV, STOCK_STRATEGY: 'redis-gate' },
  )

/** Brings the profile up (or reuses it) with the campaign's settings. */
export async function haCampaignUp(options: HaOptions, log: (message: string) => void): Promise<void> {
  await haUp(options, (message) => log(`stack: ${message}`))
  await waitForWholeCluster(options)
}

/**
 * Every server of the profile up, a Patroni leader with two streaming replicas, a Redis primary with
 * two replicas, and every app host's worker ready.
 */
export async function waitForWholeCluster(options: HaOptions, timeoutMs = 90_000): Promise<void> {
  let last = ''
  await waitFor(
    'the HA profile to be whole',
    async () => {
      const status = await haStatus(options)
      const down = status.servers.filter((s) => !s.up).map((s) => `${s.name}@${s.host}`)
      const ready = await Promise.all(
        haUrls().workers.map(async (url) => (await httpStatus(`${url}/health/ready`)) === 200),
      )
      last = `down: ${down.join(' ') || 'none'}; leader ${status.postgres.leader}; redis primary ${status.redis.primary}; workers ready ${ready.filter(Boolean).length}/${ready.length}`
      return (
        down.length === 0 &&
        status.postgres.leader !== null &&
        status.postgres.streaming.length === 2 &&
        status.redis.primary !== null &&
        ready.every(Boolean)
      )
    },
    timeoutMs,
  ).catch((error: Error) => {
    throw new Error(`${error.message} (${last})`)
  })
}

export async function runHaCase(
  fc: HaFaultCase,
  seed: number,
  options: HaOptions,
  log: (message: string) => void,
): Promise<HaCaseResult> {
  const started = Date.now()
  const load = { ...HA_LOAD, ...fc.load }
  // The cluster is whole here: haCampaignUp waited for it, and every case ends by waiting for it again.
  const urls = haUrls()
  const target: LoadTarget = remoteTarget(
    {
      nginxUrl: urls.nginxUrl,
      adminUrl: urls.nginxAdminUrl,
      databaseUrl: urls.databaseUrl,
      workerMetrics: hostsWithRole('app').map((h) => `http://${h.address}:${HA_PORTS.metrics}/metrics`),
    },
    haAppSetup(options, haHost('app1')).env,
  )
  try {
    const admin = await AdminApi.connect(target)
    const productId = await admin.loadTestProduct(target.db)
    const units = Math.max(1000, load.rate * load.durationSeconds)
    const sale = await admin.createSale({
      productId,
      units,
      perUserLimit: load.limit,
      priceCents: 999,
      openSeconds: load.durationSeconds + 600,
    })
    const users = await createLoadTestUsers(target.db, target.config, load.users)
    log(
      `sale ${sale.id}: ${units} units, ${users.length} buyers, ${load.connections} connections at ${load.rate}/s for ${load.durationSeconds} s`,
    )
    const handles = await haHandles(options)
    const random = seededRandom(seed)
    const events: FaultEvent[] = []
    let loadStartedAt = Date.now()
    let faultAt: number | null = null
    const elapsedMs = () => Date.now() - loadStartedAt
    const record = (what: string) => {
      events.push({ atMs: Math.round(elapsedMs()), what })
      log(`fault: ${what}`)
    }
    const ctx: HaCaseContext = {
      options,
      handles,
      target,
      admin,
      load,
      sale,
      log,
      random,
      elapsedMs,
      fault(what) {
        faultAt = Date.now()
        record(what)
      },
      note: record,
      async waitForRandomMoment(fromMs, toMs) {
        const at = fromMs + random() * (toMs - fromMs)
        while (elapsedMs() < at) await new Promise((resolve) => setTimeout(resolve, 20))
      },
    }

    // When each fresh 201 and each 5xx was answered, for the outage and the recovery (outageAfter).
    const oks: number[] = []
    const failures: number[] = []
    const stock = watchSale(target, sale.id, () => loadStartedAt)
    const buyers = createBuyers(users, {
      replayShare: 0.05,
      greedyShare: 0.05,
      units: sale.unitsTotal,
      limit: load.limit,
      retryFailed: true,
    })
    const purchase: LoadRequest = {
      setupRequest: (request, context) => buyers.next(request, context, sale.id),
      onResponse: (status, body, context, headers) => {
        buyers.record(status, body, headers, context)
        // A replayed 201 (an earlier attempt's answer, for its Idempotency-Key) may come from Redis while
        // Postgres is away: only a fresh order shows the sale selling again.
        const replayed = headers['idempotent-replayed'] === 'true'
        if (status === 201 && !replayed) oks.push(Date.now())
        else if (status >= 500) failures.push(Date.now())
      },
    }
    const notes: Observation['notes'] = {}
    const [loadResult, injectResult] = await runLoadAlongside(
      {
        title: fc.name,
        url: target.nginxUrl,
        connections: load.connections,
        durationSeconds: load.durationSeconds,
        overallRate: load.rate,
        timeoutSeconds: 15,
        requests: [purchase],
        onStart: (at) => {
          loadStartedAt = at
          buyers.start(at)
        },
        progressNote: () => `${stock.remaining() ?? sale.unitsTotal}/${sale.unitsTotal} units left`,
      },
      () => fc.inject(ctx, notes),
    )
    stock.stop()
    // Whatever happened, the cluster is made whole for the next case before anything is thrown.
    await fc.restore(ctx, notes)
    if (injectResult.status === 'rejected') throw injectResult.reason
    if (loadResult.status === 'rejected') throw loadResult.reason
    await waitForWholeCluster(options)
    const outage = faultAt === null ? null : outageAfter(faultAt, oks, failures)
    if (outage) {
      notes.recoveryMs = outage.recoveryMs ?? 'never'
      notes.outageMs = outage.outageMs ?? 'never'
      notes.outage5xx = outage.outage5xx
    }
    const seen: Observed = {
      load: loadResult.value,
      events,
      failedKeys: [...buyers.failedKeys.values()],
      failedLatency: percentiles(buyers.tally.failedLatencyMs),
      probe: null,
      counters: {},
      processes: { before: [], after: [] },
      notes,
      buyers,
    }
    const result = await judge(fc, ctx, seed, seen, users, started)
    if (outage) {
      result.checks.push({
        invariant: 'I3',
        name: 'the sale recovered: purchases were answered 201 again after the fault',
        ok: outage.recoveryMs !== null,
        detail:
          outage.recoveryMs === null
            ? 'no 201 after the fault'
            : `recovered ${outage.recoveryMs} ms after the fault (${outage.outage5xx} 5xx after it; the longest stop without a 201: ${outage.outageMs} ms)`,
      })
      result.verdict = result.checks.every((c) => c.ok) ? 'pass' : 'FAIL'
    }
    return {
      ...result,
      recoveryMs: outage?.recoveryMs ?? null,
      outageMs: outage?.outageMs ?? null,
      outage5xx: outage?.outage5xx ?? 0,
    }
  } finally {
    await target.close()
  }
}
