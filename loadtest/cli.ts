// `npm run load -- <scenario> [--flag value ...] [--strategy redis-gate] [--as-is]`
// Brings the dev stack to load-test settings (raised rate limits, the strategy asked for; only what
// changed is restarted), runs the scenario, verifies the invariants, prints the report and writes it to
// loadtest/results/. Exits 1 when an invariant broke. See docs/load-testing.md.
import { parseArgs } from 'node:util'
import { STOCK_STRATEGIES, type StockStrategyName } from '../src/config.js'
import { stackUp, stackStatus } from '../scripts/stack/stack.js'
import { AdminApi } from './admin.js'
import { bold, formatRun, red, writeReports } from './report.js'
import { flagOf, paramsFrom, SCENARIOS, scenarioParams, usage } from './scenarios/registry.js'
import { WAITING_ROOM_DEFAULTS, waitingRoom } from './scenarios/waiting-room.js'
import { verifyInvariants } from './verify.js'
import { formatWaitingRoom, variantOf, writeWaitingRoomDoc } from './waiting-room-report.js'
import { loadStackOptions, loadTarget } from './target.js'

const USAGE = `usage: npm run load -- <scenario> [--flags] [--strategy ${STOCK_STRATEGIES.join('|')}] [--as-is]

scenarios and their defaults:
${usage()}
  waiting-room a crowd joins a sale's waiting room, then buys when admitted (docs/waiting-room.md)
            ${Object.entries(WAITING_ROOM_DEFAULTS)
              .map(([k, v]) => `--${flagOf(k)} ${v}`)
              .join(' ')}

  --strategy   the stock strategy the workers run with (default redis-gate)
  --as-is      use the running stack as it is: no restart, its own rate limits and strategy`

const flagNames = new Set(
  [...Object.values(SCENARIOS).map((s) => s.defaults), WAITING_ROOM_DEFAULTS].flatMap((d) =>
    Object.keys(d).map(flagOf),
  ),
)
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
const WAITING_ROOM = 'waiting-room'
if (values.help || !name || (!SCENARIOS[name] && name !== WAITING_ROOM)) {
  console.log(USAGE)
  process.exit(values.help ? 0 : 2)
}
const strategy = values.strategy as StockStrategyName
if (!STOCK_STRATEGIES.includes(strategy)) {
  console.error(`--strategy ${strategy}: expected one of ${STOCK_STRATEGIES.join(', ')}`)
  process.exit(2)
}
const flags = values as unknown as Record<string, string | undefined>

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
  if (name === WAITING_ROOM) {
    const report = await waitingRoom({ target, admin, log }, paramsFrom(WAITING_ROOM_DEFAULTS, flags))
    log('verifying the invariants ...')
    const verification = await verifyInvariants({
      db: target.db,
      admin,
      evidence: report.evidence,
      sweepIntervalMs: target.config.SWEEP_INTERVAL_MS,
    })
    const text = formatWaitingRoom(
      report,
      verification,
      new Date().toISOString().slice(0, 16).replace('T', ' '),
    )
    console.log(`\n${text}\n`)
    for (const check of verification.checks)
      if (!check.ok) console.error(red(`FAIL ${check.invariant} ${check.name}: ${check.detail}`))
    if (writeWaitingRoomDoc(variantOf(report), text))
      console.log(`written to docs/waiting-room.md (${variantOf(report)})`)
    if (!verification.ok) process.exitCode = 1
  } else {
    const run = await SCENARIOS[name]!.run({ target, admin, log }, scenarioParams(name, flags))
    console.log(`\n${formatRun(run)}\n`)
    const files = writeReports(name, [run])
    console.log(`report: ${files.html}\n        ${files.json}`)
    if (!values['as-is'])
      console.log('the stack keeps the load-test settings; `npm run stack:up` puts the defaults back')
    if (!run.verification.ok) {
      console.error(red(bold('\nINVARIANT VIOLATED: see the FAIL lines above')))
      process.exitCode = 1
    }
  }
} finally {
  await target.close()
}
