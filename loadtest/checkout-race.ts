// npm run race -- [--buyers 300] [--units 20] [--strategy optimistic|pessimistic|atomic|all]
//
// The cart-checkout race (loadtest/scenarios/checkout-race.ts) per strategy, through nginx. Prints
// successes, OUT_OF_STOCK answers, anything else, stock conflicts and retries (from the merged metrics)
// and the burst's wall time. The stack restarts its workers with each strategy (only what changed).
import { parseArgs } from 'node:util'
import { stackUp } from '../scripts/stack/stack.js'
import type { StockStrategyName } from '../src/config.js'
import { AdminApi } from './admin.js'
import { checkoutRace } from './scenarios/checkout-race.js'
import { loadStackOptions, loadTarget } from './target.js'

const { values } = parseArgs({
  options: {
    buyers: { type: 'string', default: '300' },
    units: { type: 'string', default: '20' },
    strategy: { type: 'string', default: 'all' },
  },
})
const strategies: StockStrategyName[] =
  values.strategy === 'all' ? ['optimistic', 'pessimistic', 'atomic'] : [values.strategy as StockStrategyName]

for (const strategy of strategies) {
  const options = loadStackOptions(process.env, strategy)
  await stackUp(options, () => {})
  const target = loadTarget(options)
  try {
    const admin = await AdminApi.connect(target)
    const r = await checkoutRace(target, admin, strategy, {
      buyers: Number(values.buyers),
      units: Number(values.units),
    })
    const wins = r.answers['201'] ?? 0
    const losses = r.answers['409 OUT_OF_STOCK'] ?? 0
    console.log(
      [
        `${strategy.padEnd(11)} ${r.buyers} buyers / ${r.units} units through nginx:`,
        `${wins} 201, ${losses} OUT_OF_STOCK, ${r.buyers - wins - losses} other (${JSON.stringify(r.answers)});`,
        `${r.conflicts} conflicts, ${r.retries} retries; burst ${r.wallMs.toFixed(0)} ms;`,
        `Postgres: ${r.orders} orders, available ${r.available}`,
      ].join(' '),
    )
    if (!r.ok) process.exitCode = 1
  } finally {
    await target.close()
  }
}
