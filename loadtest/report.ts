import { mkdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { REPO_ROOT } from '../scripts/stack/paths.js'
import { renderHtml } from './html.js'
import type { ScenarioRun } from './scenario.js'

// The report of one or more runs: a table on the terminal, and the same runs as JSON and as a
// self-contained HTML page with charts in loadtest/results/ (git-ignored).

export const RESULTS_DIR = path.join(REPO_ROOT, 'loadtest', 'results')

const useColor = process.env.FORCE_COLOR
  ? process.env.FORCE_COLOR !== '0'
  : process.stdout.isTTY && !process.env.NO_COLOR
const paint = (code: number) => (text: string) => (useColor ? `\x1b[${code}m${text}\x1b[0m` : text)
export const red = paint(31)
export const green = paint(32)
export const yellow = paint(33)
export const bold = paint(1)
export const dim = paint(2)

export const num = (n: number, digits = 0) =>
  n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
const ms = (n: number) => (n >= 100 ? num(n) : num(n, 1))
const pct = (ratio: number | null) => (ratio === null ? 'n/a' : `${num(ratio * 100, 1)}%`)
const seconds = (msValue: number | null) => (msValue === null ? 'n/a' : `${num(msValue / 1000, 2)} s`)

/** 429s are the system saying "not you, not now": counted apart from errors. */
export function answerGroups(answers: Record<string, number>) {
  const entries = Object.entries(answers).sort(([a], [b]) => a.localeCompare(b))
  const sum = (pick: (key: string) => boolean) =>
    entries.filter(([k]) => pick(k)).reduce((s, [, n]) => s + n, 0)
  return {
    entries,
    ok: sum((k) => k.startsWith('2')),
    throttled: sum((k) => k.startsWith('429')),
    serverErrors: sum((k) => k.startsWith('5')),
  }
}

export function formatRun(run: ScenarioRun): string {
  const { load, sale, metrics, verification } = run
  const lines: string[] = []
  const row = (label: string, value: string) => lines.push(`  ${label.padEnd(16)} ${value}`)
  const params = Object.entries(run.params)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ')
  lines.push(bold(`${run.scenario}  (${run.strategy})  ${run.startedAt}`), dim(`  ${params}`))

  row(
    'throughput',
    `${num(load.requestsPerSecond)} answers/s  (${num(load.answered)} in ${num(load.durationSeconds, 1)} s, ` +
      `${load.connections} connections${load.overallRate ? `, rate ${load.overallRate}/s` : ''})`,
  )
  row(
    'latency ms',
    `p50 ${ms(load.latencyMs.p50)}  p90 ${ms(load.latencyMs.p90)}  p99 ${ms(load.latencyMs.p99)}  max ${ms(load.latencyMs.max)}`,
  )
  const groups = answerGroups(load.answers)
  row('answers', groups.entries.map(([k, n]) => `${k}: ${num(n)}`).join(', ') || 'none')
  row(
    'load generator',
    `${num(load.generatorCpuSeconds, 1)} s CPU in ${num(load.durationSeconds, 1)} s ` +
      `(${num((load.generatorCpuSeconds / load.durationSeconds) * 100)}% of one core, on the same machine)`,
  )
  row(
    'not answered',
    `${num(load.errors)} connection errors (${num(load.timeouts)} timeouts), ${num(load.unanswered)} cut off at the end`,
  )
  const errorText = `${num(groups.serverErrors)} 5xx, ${num(load.errors)} connection errors`
  row(
    '429 vs errors',
    `${num(groups.throttled)} throttled (429, not errors); ${groups.serverErrors + load.errors > 0 ? red(errorText) : errorText}`,
  )
  if (sale) {
    row(
      'sale',
      `${sale.taken}/${sale.units} units taken, limit ${sale.perUserLimit}/user; first SOLD_OUT ${seconds(sale.firstSoldOutMs)}, ` +
        `last order ${seconds(sale.lastOrderMs)}`,
    )
    row(
      'orders',
      `${num(sale.created)} created, ${num(sale.replayed)} replays of a used key; ` +
        `${sale.durableUnitsPerSecond === null ? 'n/a' : num(sale.durableUnitsPerSecond)} durable units/s`,
    )
  }
  if (metrics) {
    const meanRetries = metrics.stockDecisions > 0 ? metrics.stockRetries / metrics.stockDecisions : 0
    const meanBatch = metrics.batchesCommitted > 0 ? metrics.batchedOrders / metrics.batchesCommitted : 0
    row(
      'stock path',
      `${num(metrics.stockConflicts)} conflicts, ${num(metrics.stockRetries)} retries ` +
        `(${num(meanRetries, 2)} per decision); ${num(metrics.batchesCommitted)} batches ` +
        `(${num(meanBatch, 1)} orders each${metrics.batchesFailed ? `, ${red(`${metrics.batchesFailed} failed`)}` : ''})`,
    )
    row(
      'cache',
      metrics.cache.length === 0
        ? 'no lookups'
        : metrics.cache.map((c) => `${c.layer} ${pct(c.hitRatio)} hits of ${num(c.lookups)}`).join(', '),
    )
    lines.push(
      dim(
        `  ${''.padEnd(16)} metrics: ${metrics.from === 'merged' ? 'merged view of the jobs process' : 'summed over the workers'}`,
      ),
    )
  } else {
    row('stock path', 'n/a (no metrics endpoint answered)')
    row('cache', 'n/a')
  }
  const failed = verification.checks.filter((c) => !c.ok).length
  row(
    'invariants',
    verification.ok
      ? green(`PASSED (${verification.checks.length} checks)`)
      : red(bold(`FAILED: ${failed} of ${verification.checks.length} checks`)),
  )
  for (const check of verification.checks) {
    const mark = check.ok ? green('ok  ') : red('FAIL')
    const text = `${check.invariant} ${check.name}: ${check.detail}`
    lines.push(`    ${mark} ${check.ok ? text : red(text)}`)
  }
  return lines.join('\n')
}

const stamp = (iso: string) => iso.replace(/[:.]/g, '-').replace(/-\d{3}Z$/, 'Z')

/** Writes <name>-<timestamp>.json and .html; returns their paths. */
export function writeReports(name: string, runs: ScenarioRun[], extra: Record<string, unknown> = {}) {
  mkdirSync(RESULTS_DIR, { recursive: true })
  const base = path.join(RESULTS_DIR, `${name}-${stamp(runs[0]?.startedAt ?? new Date().toISOString())}`)
  const json = `${base}.json`
  const html = `${base}.html`
  writeFileSync(json, `${JSON.stringify({ ...extra, runs }, null, 2)}\n`)
  writeFileSync(html, renderHtml(name, runs))
  return { json, html }
}
