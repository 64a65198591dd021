// `npm run load -- <scenario> [--flag value ...] [--strategy redis-gate] [--as-is]`
// Brings the dev stack to load-test settings (raised rate limits, the strategy asked for; only what
// changed is restarted), runs the scenario, verifies the invariants, prints the report and writes it to
// loadtest/results/. Exits 1 when an invariant broke. See docs/load-testing.md.
import { parseArgs } from 'node:util'
import { STOCK_STRATEGIES, type StockStrategyName } from '../src/config.js'
import { stackUp, stackStatus } from '../scripts/stack/stack.js'
import { AdminApi } from './admin.js'
import { bold, formatRun, red, writeReports } from './report.js'
import { flagOf, SCENARIOS, scenarioParams, usage } from './scenarios/registry.js'
import { loadStackOptions, loadTarget } from './target.js'

const USAGE = `usage: npm run load -- <scenario> [--flags] [--strategy ${STOCK_STRATEGIES.join('|')}] [--as-is]

scenarios and their defaults:
${usage()}

  --strategy   the stock strategy the workers run with (default redis-gate)
  --as-is      use the running stack as it is: no restart, its own rate limits and strategy`

const flagNames = new Set(Object.values(SCENARIOS).flatMap((s) => Object.keys(s.defaults).map(flagOf)))
const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    ...Object.fromEntries([...flagNames].map((f) => [f, { type: 'string' as const }])),
    strategy: { type: 'string', default: 'redis-gate' },
    'as-is': { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
})
const name = positionals[0]
if (values.help || !name || !SCENARIOS[name]) {
  console.log(USAGE)
  process.exit(values.help ? 0 : 2)
}
const strategy = values.strategy as StockStrategyName
if (!STOCK_STRATEGIES.includes(strategy)) {
  console.error(`--strategy ${strategy}: expected one of ${STOCK_STRATEGIES.join(', ')}`)
  process.exit(2)
}
const params = scenarioParams(name, values as unknown as Record<string, string | undefined>)

const started = Date.now()
const log = (message: string) =>
  console.log(`[load +${((Date.now() - started) / 1000).toFixed(1)}s] ${message}`)
const options = loadStackOptions(process.env, strategy)
if (values['as-is']) {
  const status = await stackStatus(options)
  if (!status.nginx.up)
    throw new Error(`nothing answers on ${status.nginx.url}: start the stack (npm run stack:up)`)
} else {
  await stackUp(options, (message) => log(`stack: ${message}`))
}

const target = loadTarget(options)
try {
  const admin = await AdminApi.connect(target)
  const run = await SCENARIOS[name]!.run({ target, admin, log }, params)
  console.log(`\n${formatRun(run)}\n`)
  const files = writeReports(name, [run])
  console.log(`report: ${files.html}\n        ${files.json}`)
  if (!values['as-is'])
    console.log('the stack keeps the load-test settings; `npm run stack:up` puts the defaults back')
  if (!run.verification.ok) {
    console.error(red(bold('\nINVARIANT VIOLATED: see the FAIL lines above')))
    process.exitCode = 1
  }
} finally {
  await target.close()
}
