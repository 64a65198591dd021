import { startService, stopService } from '../../scripts/stack/stack.js'
import { parsePrometheusText, sumOf } from '../prometheus.js'
import { labPool, type Lab, type LabContext } from './lab.js'

// Lab 7, replica: the streaming replica stops in the middle of catalog traffic. The broken variant is a
// catalog read with no way around the replica (the lab's own pool on the replica's URL); the fixed one is
// the app's catalog through nginx, whose reads move to the primary. The workers run with CACHE_MODE=off
// here, so every catalog read is a query and the pools' counters show where it went.

/** The workers' counters: queries by pool, and db_replica_in_use (summed over workers). */
async function workerCounters(ctx: LabContext) {
  const texts = await Promise.all(ctx.urls.metrics.map((url) => fetch(url).then((r) => r.text())))
  const samples = texts.flatMap((text) => parsePrometheusText(text))
  return {
    primary: sumOf(samples, 'db_queries_total', { pool: 'primary' }),
    replica: sumOf(samples, 'db_queries_total', { pool: 'replica' }),
    replicaInUse: sumOf(samples, 'db_replica_in_use'),
  }
}

/** Where each worker's /health/ready says catalog reads go, and what it answered. */
async function readiness(ctx: LabContext): Promise<string> {
  const answers = await Promise.all(
    ctx.urls.workers.map(async (url) => {
      const response = await fetch(`${url}/health/ready`)
      const body = (await response.json()) as { readsFrom?: string }
      return `${response.status} readsFrom ${body.readsFrom}`
    }),
  )
  return answers.join(' | ')
}

/** `count` catalog reads through nginx (the list and single products, alternately); non-2xx counted. */
async function catalogReads(ctx: LabContext, count: number, productIds: number[]) {
  const statuses: Record<string, number> = {}
  for (let n = 0; n < count; n += 10) {
    await Promise.all(
      Array.from({ length: 10 }, async (_, i) => {
        const path =
          (n + i) % 2 === 0 ? '/api/products' : `/api/products/${productIds[(n + i) % productIds.length]}`
        const response = await fetch(`${ctx.target.nginxUrl}${path}`).catch(() => null)
        await response?.text()
        const key = String(response?.status ?? 'no answer')
        statuses[key] = (statuses[key] ?? 0) + 1
      }),
    )
  }
  return statuses
}

/** The same reads straight from the replica, as a read path without a fallback would do them. */
async function replicaOnlyReads(ctx: LabContext, count: number) {
  const pool = labPool({ connectionString: ctx.urls.replicaUrl, max: 4, connectionTimeoutMillis: 1000 })
  let failed = 0
  let sample = ''
  try {
    for (let n = 0; n < count; n++) {
      await pool.query('SELECT id, name FROM products ORDER BY id LIMIT 20').catch((error: Error) => {
        failed++
        sample ||= error.message
      })
    }
  } finally {
    await pool.end()
  }
  return { failed, sample }
}

const summary = (statuses: Record<string, number>) =>
  Object.entries(statuses)
    .map(([status, n]) => `${n} x ${status}`)
    .join(', ')

export const replica: Lab = {
  name: 'replica',
  title: 'the replica stops: a read path bound to it fails; the app moves catalog reads to the primary',
  async run(ctx) {
    const reads = ctx.quick ? 100 : 400
    await ctx.withAppEnv({ CACHE_MODE: 'off' })
    const productIds = (
      await ctx.target.db.query<{ id: number }>('SELECT id::int AS id FROM products LIMIT 20')
    ).rows.map((r) => r.id)
    ctx.log(`before: ${await readiness(ctx)}`)
    let replicaStopped = false
    try {
      await stopService(ctx.options, 'replica')
      replicaStopped = true
      ctx.log('fault: replica stopped (pg_ctl -m fast)')
      const bound = await replicaOnlyReads(ctx, 20)
      const before = await workerCounters(ctx)
      const statuses = await catalogReads(ctx, reads, productIds)
      const after = await workerCounters(ctx)
      const ready = await readiness(ctx)
      const errors = reads - (statuses['200'] ?? 0)
      await startService(ctx.options, 'replica')
      replicaStopped = false
      ctx.log('replica started again')
      // Back on the replica once the lag probe sees it answer and catch up.
      const back = Date.now() + 15_000
      let again = await readiness(ctx)
      while (!again.split(' | ').every((w) => w.includes('readsFrom replica')) && Date.now() < back) {
        await new Promise((resolve) => setTimeout(resolve, 250))
        again = await readiness(ctx)
      }
      ctx.log(`after the restart: ${again}`)
      return {
        broken: {
          line: `reads bound to the replica: ${bound.failed} of 20 failed (${bound.sample})`,
          asExpected: bound.failed === 20,
        },
        fixed: {
          line:
            `the app's catalog with the replica down: ${reads} reads through nginx -> ${summary(statuses)}; ` +
            `queries on the primary +${after.primary - before.primary}, on the replica +${after.replica - before.replica}; ` +
            `db_replica_in_use ${after.replicaInUse}; /health/ready: ${ready}`,
          asExpected: errors === 0 && after.replica === before.replica && after.replicaInUse === 0,
        },
      }
    } finally {
      if (replicaStopped) await startService(ctx.options, 'replica').catch(() => undefined)
    }
  },
}
