import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { testStack } from '../test/support/stack-env.js'
import { AdminApi } from './admin.js'
import { stampede } from './scenarios/stampede.js'
import { remoteTarget, loadTarget, type LoadTarget } from './target.js'

// CI smoke run of the load-test machinery: a few seconds of flash sale through the test stack's nginx, then
// the verifier. No timing assertions: CI machines vary. The test stack keeps nginx's default limit_req
// (50 r/s, burst 100) and the app's 10 purchases/s per user, so many answers are 429: they must be counted
// apart from errors, and the invariants must hold all the same.

const stack = testStack()

describe.skipIf(stack.nginxUrl === undefined)('the stampede scenario against the test stack', () => {
  let target: LoadTarget
  beforeAll(() => {
    // In containers: the published nginx, its admin server and the primary; the app's own settings.
    target = stack.options
      ? loadTarget(stack.options, process.env)
      : remoteTarget(
          { nginxUrl: stack.nginxUrl!, adminUrl: stack.nginxAdminUrl!, databaseUrl: stack.databaseUrl },
          {},
          process.env,
        )
  })
  afterAll(() => target?.close())

  it(
    'when 200 buyers race for 20 units for 3 s, the sale sells out exactly and every invariant holds',
    { timeout: 60_000 },
    async () => {
      const admin = await AdminApi.connect(target)
      const run = await stampede(
        { target, admin, log: () => undefined },
        { units: 20, users: 200, connections: 20, duration: 3, limit: 2, replay: 0.1, greedy: 0.1 },
      )

      const failed = run.verification.checks.filter((c) => !c.ok)
      expect(failed, JSON.stringify(failed, null, 2)).toEqual([])
      expect(run.sale?.taken).toBe(20)
      expect(run.sale?.created).toBe(20)
      const answers = run.load.answers
      const throttled = Object.entries(answers)
        .filter(([key]) => key.startsWith('429'))
        .reduce((sum, [, n]) => sum + n, 0)
      // Every answer is accounted for: orders, sold out, the greedy buyers' limit, throttled (429, not
      // errors), and nothing else odd.
      const known =
        (answers['201'] ?? 0) +
        (answers['409 SOLD_OUT'] ?? 0) +
        (answers['409 PER_USER_LIMIT'] ?? 0) +
        (answers['409 IDEMPOTENCY_KEY_IN_USE'] ?? 0)
      expect(known + throttled).toBe(run.load.answered)
      expect(Object.keys(answers).filter((key) => key.startsWith('5'))).toEqual([])
    },
  )
})
