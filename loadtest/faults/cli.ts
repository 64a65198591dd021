// `npm run faults [-- <case ...>] [--seed N] [--keep] [--list] [--profile ha]`
// The fault campaign (docs/reliability.md): every case, or the ones named, on a stack of its own that
// is stopped at the end (unless --keep). A full run rewrites docs/reliability.md. Exits 1 when a case
// fails. With `--profile ha`, the failover cases on the HA profile (docs/scaling.md; ha-cli.ts).
import { parseArgs } from 'node:util'
import { stackDown } from '../../scripts/stack/stack.js'
import { bold, green, red } from '../report.js'
import { campaignStackOptions, crashedCase, runCase, type CaseResult } from './campaign.js'
import { CASES } from './cases.js'
import { caseLine, writeReliabilityDoc } from './reliability-doc.js'

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    seed: { type: 'string' },
    keep: { type: 'boolean', default: false },
    list: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
    profile: { type: 'string', default: 'local' },
  },
})

if (values.profile === 'ha') {
  const { runHaCampaign } = await import('./ha-cli.js')
  process.exit(await runHaCampaign(positionals, values))
}
if (values.profile !== 'local') {
  console.error(`--profile ${values.profile}: expected ha (or nothing, for the single-host stack)`)
  process.exit(2)
}

if (values.help || values.list) {
  console.log('usage: npm run faults -- [case ...] [--seed N] [--keep]\n\ncases:')
  for (const c of CASES) console.log(`  ${c.name.padEnd(16)} ${c.title}`)
  process.exit(0)
}
const unknown = positionals.filter((name) => !CASES.some((c) => c.name === name))
if (unknown.length > 0) {
  console.error(`unknown case(s): ${unknown.join(', ')}; npm run faults -- --list`)
  process.exit(2)
}
const selected = positionals.length > 0 ? CASES.filter((c) => positionals.includes(c.name)) : CASES
const seed = values.seed !== undefined ? Number(values.seed) : Math.floor(Math.random() * 2 ** 31)
if (!Number.isInteger(seed) || seed < 0) {
  console.error(`--seed ${values.seed}: expected a whole number >= 0`)
  process.exit(2)
}

const started = new Date()
const log = (message: string) =>
  console.log(`[faults +${((Date.now() - started.getTime()) / 1000).toFixed(1)}s] ${message}`)
log(`seed ${seed}: ${selected.map((c) => c.name).join(', ')}`)

const results: CaseResult[] = []
try {
  for (const fc of selected) {
    log(`case ${fc.name}: ${fc.title}`)
    const result = await runCase(fc, seed, process.env, (message) => log(`${fc.name}: ${message}`)).catch(
      (err: Error): CaseResult => {
        log(`${fc.name}: the case could not run: ${err.stack ?? err.message}`)
        return crashedCase(fc.name, fc.title, seed, err.message)
      },
    )
    results.push(result)
    log(`${fc.name}: answers ${JSON.stringify(result.answers)}; notes ${JSON.stringify(result.notes)}`)
    for (const c of result.checks.filter((c) => !c.ok)) log(red(`${fc.name}: FAIL ${c.name}: ${c.detail}`))
    console.log(result.verdict === 'pass' ? green(caseLine(result)) : red(caseLine(result)))
  }
} finally {
  if (!values.keep) await stackDown(campaignStackOptions(process.env, CASES[0]!), log)
}

console.log(`\n${bold('fault campaign')} (seed ${seed})`)
for (const r of results) console.log(r.verdict === 'pass' ? caseLine(r) : red(caseLine(r)))
if (positionals.length === 0) log(`wrote ${writeReliabilityDoc(CASES, results, started)}`)
if (results.some((r) => r.verdict !== 'pass')) {
  console.error(red(bold(`\n${results.filter((r) => r.verdict !== 'pass').length} case(s) failed`)))
  process.exitCode = 1
}
