import { haDown, haUrls } from '../../scripts/stack/ha/ha-stack.js'
import { bold, green, red } from '../report.js'
import { crashedCase } from './campaign.js'
import { haCampaignOptions, haCampaignUp, runHaCase, type HaCaseResult } from './ha-campaign.js'
import { HA_CASES } from './ha-cases.js'
import { haCaseLine, writeScalingResults } from './scaling-doc.js'
import { measureSyncCommitCost, type SyncCommitCost } from './sync-commit-cost.js'

// `npm run faults -- --profile ha [case ...] [--seed N] [--keep] [--list]`: the failover cases on the HA
// profile, brought up for the campaign and taken down at the end (unless --keep). A full run rewrites the
// measured section of docs/scaling.md. Returns the exit code: 1 when a case fails.

export async function runHaCampaign(
  names: string[],
  flags: { seed?: string; keep?: boolean; list?: boolean; help?: boolean },
): Promise<number> {
  if (flags.help || flags.list) {
    console.log('usage: npm run faults -- --profile ha [case ...] [--seed N] [--keep]\n\ncases:')
    for (const c of HA_CASES) console.log(`  ${c.name.padEnd(20)} ${c.title}`)
    return 0
  }
  const unknown = names.filter((name) => !HA_CASES.some((c) => c.name === name))
  if (unknown.length > 0) {
    console.error(`unknown case(s): ${unknown.join(', ')}; npm run faults -- --profile ha --list`)
    return 2
  }
  const selected = names.length > 0 ? HA_CASES.filter((c) => names.includes(c.name)) : HA_CASES
  const seed = flags.seed !== undefined ? Number(flags.seed) : Math.floor(Math.random() * 2 ** 31)
  if (!Number.isInteger(seed) || seed < 0) {
    console.error(`--seed ${flags.seed}: expected a whole number >= 0`)
    return 2
  }
  const started = new Date()
  const log = (message: string) =>
    console.log(`[faults:ha +${((Date.now() - started.getTime()) / 1000).toFixed(1)}s] ${message}`)
  log(`seed ${seed}: ${selected.map((c) => c.name).join(', ')}`)

  const options = haCampaignOptions(process.env)
  const results: HaCaseResult[] = []
  let syncCost: SyncCommitCost | null = null
  try {
    await haCampaignUp(options, log)
    syncCost = await measureSyncCommitCost(haUrls().databaseUrl)
    log(
      `synchronous mode: a commit takes p50 ${syncCost.synchronous.p50} ms / p99 ${syncCost.synchronous.p99} ms ` +
        `waiting for the standby, p50 ${syncCost.local.p50} ms / p99 ${syncCost.local.p99} ms without (${syncCost.commits} commits each)`,
    )
    for (const fc of selected) {
      log(`case ${fc.name}: ${fc.title}`)
      const result = await runHaCase(fc, seed, options, (message) => log(`${fc.name}: ${message}`)).catch(
        (err: Error) => {
          log(`${fc.name}: the case could not run: ${err.stack ?? err.message}`)
          return null
        },
      )
      if (!result) {
        // A cluster the case could not make whole again would fail every case after it.
        console.log(red(`${fc.name.padEnd(20)} could not run  FAIL`))
        results.push({
          ...crashedCase(fc.name, fc.title, seed, 'see the log above'),
          recoveryMs: null,
          outageMs: null,
          outage5xx: 0,
        })
        break
      }
      results.push(result)
      log(`${fc.name}: answers ${JSON.stringify(result.answers)}; notes ${JSON.stringify(result.notes)}`)
      for (const c of result.checks.filter((c) => !c.ok)) log(red(`${fc.name}: FAIL ${c.name}: ${c.detail}`))
      console.log(result.verdict === 'pass' ? green(haCaseLine(result)) : red(haCaseLine(result)))
    }
  } finally {
    if (!flags.keep) await haDown(options, log)
  }

  console.log(`\n${bold('HA failover cases')} (seed ${seed})`)
  for (const r of results) console.log(r.verdict === 'pass' ? haCaseLine(r) : red(haCaseLine(r)))
  if (names.length === 0 && results.length === HA_CASES.length) {
    log(`wrote the measured failovers into ${writeScalingResults(HA_CASES, results, started, syncCost)}`)
  }
  const failed = results.filter((r) => r.verdict !== 'pass').length
  if (failed > 0 || results.length < selected.length) {
    console.error(red(bold(`\n${failed} case(s) failed`)))
    return 1
  }
  return 0
}
