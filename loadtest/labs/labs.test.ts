import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { stackDown } from '../../scripts/stack/stack.js'
import { testStack } from '../../test/support/stack-env.js'
import { LABS, labStackOptions, runLabs, type LabOutcome } from './runner.js'

// Every lab, in --quick mode, on the labs' own stack (.stack/labs, ports + 500), never the test stack's:
// the environment the global setup exported (the test stack's URLs and secret) is left out, or the labs
// would take the test stack's servers for external ones and run on them.

const TEST_STACK_VARIABLES = [
  'DATABASE_URL',
  'DATABASE_REPLICA_URL',
  'REDIS_URL',
  'NGINX_URL',
  'NGINX_ADMIN_URL',
  'JWT_SECRET',
  'STACK_RUNTIME',
]
const env = Object.fromEntries(
  Object.entries(process.env).filter(([name]) => !TEST_STACK_VARIABLES.includes(name)),
)

describe.skipIf(testStack().runtime !== 'local')(
  'the break-it labs (npm run lab; local stack only: each lab runs a stack of its own)',
  () => {
    const outcomes = new Map<string, LabOutcome>()
    beforeAll(async () => {
      const lines: string[] = []
      for (const outcome of await runLabs(
        LABS.map((lab) => lab.name),
        { quick: true, env, log: (line) => lines.push(line) },
      ))
        outcomes.set(outcome.name, outcome)
      console.log(lines.join('\n'))
    }, 300_000)
    // runLabs stops the stack itself; this also stops it when the run was cut short.
    afterAll(() => stackDown(labStackOptions(env), () => undefined), 60_000)

    it.each(LABS.map((lab) => lab.name))(
      'when lab %s runs, its broken variant breaks and the real code holds',
      (name) => {
        const outcome = outcomes.get(name)
        expect(outcome, `lab ${name} did not run`).toBeDefined()
        expect(outcome!.error).toBeUndefined()
        expect(outcome!.result?.broken.asExpected, outcome!.result?.broken.line).toBe(true)
        expect(outcome!.result?.fixed.asExpected, outcome!.result?.fixed.line).toBe(true)
      },
    )
  },
)
