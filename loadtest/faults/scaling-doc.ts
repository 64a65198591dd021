import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { REPO_ROOT } from '../../scripts/stack/paths.js'
import type { HaCaseResult, HaFaultCase } from './ha-campaign.js'
import { caseCounts, table } from './reliability-doc.js'
import type { SyncCommitCost } from './sync-commit-cost.js'

// The measured part of docs/scaling.md, written by a full `npm run faults -- --profile ha` run between
// the markers <!-- ha-results --> and <!-- /ha-results -->; the rest of the page is prose, kept as it is.

export const SCALING_DOC = path.join(REPO_ROOT, 'docs', 'scaling.md')
const START = '<!-- ha-results -->'
const END = '<!-- /ha-results -->'

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`
/** "never", "nothing failed", or the time to the first 201 after the last 5xx and the stop. */
const recovery = (r: HaCaseResult) =>
  r.recoveryMs === null ? 'never' : r.recoveryMs === 0 ? 'nothing failed' : seconds(r.recoveryMs)
const outage = (r: HaCaseResult) =>
  r.outageMs === null ? 'n/a' : r.outageMs === 0 ? 'never stopped' : seconds(r.outageMs)

export function haCaseLine(r: HaCaseResult): string {
  return [
    r.name.padEnd(20),
    `recovered ${recovery(r)}`,
    `sale stopped ${outage(r)}`,
    `${r.outage5xx} 5xx after the fault`,
    ...caseCounts(r),
  ].join('  ')
}

/** The engine's own failover time, where the case measured one. */
function failover(r: HaCaseResult): string {
  const n = r.notes
  const ms = n.newLeaderAfterMs ?? n.newPrimaryAfterMs
  return typeof ms === 'number' ? seconds(ms) : 'none needed'
}

export function writeScalingResults(
  cases: HaFaultCase[],
  results: HaCaseResult[],
  startedAt: Date,
  syncCost: SyncCommitCost | null,
): string {
  if (!existsSync(SCALING_DOC)) throw new Error(`${SCALING_DOC} is missing`)
  const doc = readFileSync(SCALING_DOC, 'utf8')
  const from = doc.indexOf(START)
  const to = doc.indexOf(END)
  if (from < 0 || to < from) throw new Error(`${SCALING_DOC} has no ${START} ... ${END} section`)
  const byName = new Map(results.map((r) => [r.name, r]))
  const summary = table([
    [
      'case',
      'engine failover',
      'sale stopped for',
      'recovered after',
      '5xx after the fault',
      'requests',
      'errors',
      'orders',
      'drift',
      'verdict',
    ],
    ...cases.map((fc) => {
      const r = byName.get(fc.name)!
      return [
        `[${r.name}](#${r.name})`,
        failover(r),
        outage(r),
        recovery(r),
        String(r.outage5xx),
        String(r.requests),
        String(r.errors),
        String(r.orders),
        String(r.drift ?? 'n/a'),
        r.verdict === 'pass' ? 'pass' : '**FAIL**',
      ]
    }),
  ])
  const sections = cases.map((fc) => {
    const r = byName.get(fc.name)!
    const events = r.events.map((e) => `- +${(e.atMs / 1000).toFixed(1)} s: ${e.what}`).join('\n')
    const checks = r.checks.map(
      (c) => `- ${c.ok ? 'pass' : '**FAIL**'} (${c.invariant}) ${c.name}: ${c.detail}`,
    )
    const notes = Object.entries(r.notes)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')
    return [
      `### ${fc.name}`,
      '',
      `**Fault.** ${fc.fault}`,
      '',
      `**Promise.** ${fc.promise}`,
      '',
      `**Limits.** ${fc.limits}`,
      '',
      `**Run** (seed ${r.seed}, ${r.load.connections} connections at ${r.load.rate}/s for ${r.load.durationSeconds} s): ` +
        `${r.requests} requests, ${r.ok2xx} 2xx, ${r.client4xx} 4xx, ${r.server5xx} 5xx, ${r.errors} errors, ` +
        `${r.orders} orders, drift ${r.drift ?? 'n/a'}; p50 ${r.latencyMs.p50} ms, p99 ${r.latencyMs.p99} ms.`,
      '',
      events,
      '',
      `Measured: ${notes}.`,
      '',
      ...checks,
      '',
    ].join('\n')
  })
  const body = [
    '',
    `Last full run: ${startedAt.toISOString().slice(0, 16).replace('T', ' ')} UTC, \`npm run faults -- --profile ha\` (seed ${results[0]?.seed}).`,
    '',
    ...(syncCost
      ? [
          `What synchronous mode costs a commit, measured on the leader before the cases (${syncCost.commits} one-row ` +
            `INSERTs each way, interleaved): p50 ${syncCost.synchronous.p50} ms and p99 ${syncCost.synchronous.p99} ms ` +
            `waiting for the synchronous standby, p50 ${syncCost.local.p50} ms and p99 ${syncCost.local.p99} ms with ` +
            '`synchronous_commit = local`. The batcher writes one commit per batch of orders, so a buyer pays it once per batch.',
          '',
        ]
      : []),
    summary,
    '',
    ...sections,
  ].join('\n')
  writeFileSync(SCALING_DOC, `${doc.slice(0, from + START.length)}\n${body}\n${doc.slice(to)}`)
  return SCALING_DOC
}
