import path from 'node:path'
import { loadConfig } from '../../src/config.js'
import {
  stackDown,
  stackHandles,
  stackOptionsFromEnv,
  stackUp,
  stackUrls,
  type StackOptions,
} from '../../scripts/stack/stack.js'
import { AdminApi } from '../admin.js'
import { LOAD_TEST_NGINX_LIMITS, loadTarget } from '../target.js'
import { LABS_APP_ENV, type Lab, type LabResult } from './lab.js'
import { batching } from './batching.js'
import { coldKey } from './cold-key.js'
import { deadlock } from './deadlock.js'
import { oversell } from './oversell.js'
import { postRetry } from './post-retry.js'
import { replica } from './replica.js'
import { workerKill } from './worker-kill.js'

// Runs labs on a stack of their own (folder <STACK_DIR>/labs, every port + 500), so a lab never
// disturbs the dev stack, the test stack (+100) or the fault campaign's (+400). See docs/labs/.

export const LABS: Lab[] = [oversell, deadlock, coldKey, batching, workerKill, postRetry, replica]

export const LABS_PORT_OFFSET = 500

export function labStackOptions(env: NodeJS.ProcessEnv, appEnv: Record<string, string> = {}): StackOptions {
  return stackOptionsFromEnv(
    { ...LOAD_TEST_NGINX_LIMITS, ...env },
    {
      name: 'labs',
      dir: path.join(loadConfig(env).STACK_DIR, 'labs'),
      portOffset: LABS_PORT_OFFSET,
      services: { prometheus: false },
      appEnv: { ...LABS_APP_ENV, ...appEnv },
    },
  )
}

export interface LabOutcome {
  name: string
  ok: boolean
  seconds: number
  result?: LabResult
  error?: string
}

export interface RunLabsOptions {
  quick?: boolean
  /** Leave the stack running afterwards (to look around); the default stops it. */
  keep?: boolean
  log?: (message: string) => void
  env?: NodeJS.ProcessEnv
}

/** Brings up the labs' stack, runs the named labs in order, and stops the stack (even on failure). */
export async function runLabs(names: string[], opts: RunLabsOptions = {}): Promise<LabOutcome[]> {
  const env = opts.env ?? process.env
  const print = opts.log ?? ((message: string) => console.log(message))
  const labs = names.map((name) => {
    const lab = LABS.find((l) => l.name === name)
    if (!lab) throw new Error(`no lab named ${name}: ${LABS.map((l) => l.name).join(', ')}`)
    return lab
  })
  const started = Date.now()
  const stackLog = (message: string) =>
    print(`[labs +${((Date.now() - started) / 1000).toFixed(1)}s] ${message}`)
  let options = labStackOptions(env)
  const outcomes: LabOutcome[] = []
  try {
    await stackUp(options, (message) => stackLog(`stack: ${message}`))
    const target = loadTarget(options, env)
    try {
      const admin = await AdminApi.connect(target)
      for (const lab of labs) {
        const labStarted = Date.now()
        print(`\n== lab ${lab.name}: ${lab.title}`)
        const ctx = {
          options,
          urls: stackUrls(options),
          handles: await stackHandles(options),
          target,
          admin,
          quick: opts.quick ?? false,
          log: (message: string) => print(`   ${message}`),
          withAppEnv: async (appEnv: Record<string, string>) => {
            options = labStackOptions(env, appEnv)
            await stackUp(options, (message) => stackLog(`stack: ${message}`))
          },
        }
        const seconds = () => Math.round((Date.now() - labStarted) / 100) / 10
        try {
          const result = await lab.run(ctx)
          // Whatever the lab changed, the next one starts from the labs' own settings.
          await ctx.withAppEnv({})
          const ok = result.broken.asExpected && result.fixed.asExpected
          print(
            `   broken: ${result.broken.line}${result.broken.asExpected ? '' : '  <- expected it to break'}`,
          )
          print(`   fixed:  ${result.fixed.line}${result.fixed.asExpected ? '' : '  <- expected it to hold'}`)
          print(`   ${ok ? 'PASS' : 'FAIL'} (${seconds()} s)`)
          outcomes.push({ name: lab.name, ok, seconds: seconds(), result })
        } catch (error) {
          const message = error instanceof Error ? error.message : String(error)
          print(`   FAIL (${seconds()} s): ${message}`)
          outcomes.push({ name: lab.name, ok: false, seconds: seconds(), error: message })
          await ctx.withAppEnv({}).catch(() => undefined)
        }
      }
    } finally {
      await target.close()
    }
  } finally {
    if (!opts.keep) await stackDown(options, (message) => stackLog(`stack: ${message}`))
  }
  return outcomes
}
