import type { ScenarioRun } from '../scenario.js'
import { browse, BROWSE_DEFAULTS } from './browse.js'
import { ceiling, CEILING_DEFAULTS, postCeiling, POST_CEILING_DEFAULTS } from './ceiling.js'
import { checkout, CHECKOUT_DEFAULTS } from './checkout.js'
import type { ScenarioContext } from './common.js'
import { contention, CONTENTION_DEFAULTS } from './contention.js'
import { soak, SOAK_DEFAULTS } from './soak.js'
import { stampede, STAMPEDE_DEFAULTS } from './stampede.js'

// Every scenario by name, with its parameters' defaults: the command line offers exactly these keys
// (camelCase keys become --kebab-case flags).

type Params = Record<string, number>
interface Scenario {
  defaults: Params
  run(ctx: ScenarioContext, params: Params): Promise<ScenarioRun>
  summary: string
}

const scenario = <P extends object>(
  defaults: P,
  run: (ctx: ScenarioContext, params: P) => Promise<ScenarioRun>,
  summary: string,
): Scenario => ({
  defaults: defaults as unknown as Params,
  run: (ctx, params) => run(ctx, params as unknown as P),
  summary,
})

export const SCENARIOS: Record<string, Scenario> = {
  ceiling: scenario(CEILING_DEFAULTS, ceiling, 'GET /health/live through nginx and PM2: the reads reference'),
  'post-ceiling': scenario(
    POST_CEILING_DEFAULTS,
    postCeiling,
    'an authenticated JSON POST through the purchase location that buys nothing: the purchases reference',
  ),
  browse: scenario(BROWSE_DEFAULTS, browse, 'product and sale pages: the cache path'),
  stampede: scenario(STAMPEDE_DEFAULTS, stampede, 'a flash sale: units, distinct users, retries, limits'),
  checkout: scenario(CHECKOUT_DEFAULTS, checkout, 'cart, checkout and pay on one product'),
  soak: scenario(SOAK_DEFAULTS, soak, 'a constant mixed rate for a longer time'),
  contention: scenario(
    CONTENTION_DEFAULTS,
    contention,
    'buyers spread over --rows stock rows that never sell out',
  ),
}

export const flagOf = (key: string) => key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)

/** The scenario's defaults with the flags given (`--units 100`); unknown or non-numeric flags throw. */
export function scenarioParams(name: string, flags: Record<string, string | undefined>): Params {
  const found = SCENARIOS[name]
  if (!found)
    throw new Error(`unknown scenario ${JSON.stringify(name)}: ${Object.keys(SCENARIOS).join(', ')}`)
  return paramsFrom(found.defaults, flags)
}

/** `defaults` with the flags given for its keys; a non-numeric or negative value throws. */
export function paramsFrom<P extends object>(defaults: P, flags: Record<string, string | undefined>): P {
  const params = { ...defaults } as Params
  for (const key of Object.keys(params)) {
    const given = flags[flagOf(key)]
    if (given === undefined) continue
    const value = Number(given)
    if (!Number.isFinite(value) || value < 0)
      throw new Error(`--${flagOf(key)} ${given}: expected a number >= 0`)
    params[key] = value
  }
  return params as P
}

export function usage(): string {
  return Object.entries(SCENARIOS)
    .map(
      ([name, s]) =>
        `  ${name.padEnd(10)} ${s.summary}\n            ${Object.entries(s.defaults)
          .map(([k, v]) => `--${flagOf(k)} ${v}`)
          .join(' ')}`,
    )
    .join('\n')
}
