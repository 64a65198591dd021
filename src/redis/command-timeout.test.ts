import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { FastifyInstance } from 'fastify'
import { stackPaths } from '../../scripts/stack/paths.js'
import { redisPid } from '../../scripts/stack/redis.js'
import { buildTestApp, newAdmin, newCustomer, newSale, type TestUser } from '../../test/support/app.js'
import { localStackOptions, testStack } from '../../test/support/stack-env.js'

const purchase = (app: FastifyInstance, buyer: TestUser, saleId: number) =>
  app.inject({
    method: 'POST',
    url: `/api/sales/${saleId}/purchase`,
    headers: buyer.headers,
    payload: { quantity: 1 },
  })

/** The test stack's redis-server: paused with SIGSTOP, it keeps its sockets open and answers nothing. */
function testRedisPid(): number {
  const options = localStackOptions()
  const pid = redisPid({ dir: stackPaths(options.dir).redisDir, port: options.ports.redis })
  if (pid === undefined) throw new Error('the test stack runs no redis-server of its own')
  return pid
}

// Pausing Redis needs the local stack's own redis-server process: in containers the file is skipped.
describe.runIf(testStack().options !== undefined)(
  'Redis command timeout (local stack only: it pauses redis-server)',
  () => {
    let app: FastifyInstance

    beforeAll(async () => {
      // A purchase meets a paused Redis twice, one after the other: the sale's cached facts (which then
      // come from Postgres) and the rate limit (which fails the request). 500 ms each keeps the answer
      // well inside the bound asserted below.
      app = await buildTestApp({ STOCK_STRATEGY: 'redis-gate', REDIS_COMMAND_TIMEOUT_MS: '500' })
    })
    afterAll(async () => {
      await app.close()
    })

    it('when Redis is paused, then a purchase answers 503 with Retry-After within 3 s, and buyers are served again once it resumes', async () => {
      const admin = await newAdmin(app)
      const saleId = await newSale(app, admin, { units: 5 })
      const [early, late] = [await newCustomer(app), await newCustomer(app)]
      const pid = testRedisPid()

      process.kill(pid, 'SIGSTOP')
      const started = performance.now()
      let answer: Awaited<ReturnType<typeof purchase>> | 'no answer'
      try {
        // Never wait for ever with Redis paused: a hung request must fail this test, not stall the run.
        answer = await Promise.race([purchase(app, early, saleId), sleep(5000, 'no answer' as const)])
      } finally {
        process.kill(pid, 'SIGCONT')
      }
      const elapsedMs = performance.now() - started

      if (answer === 'no answer') throw new Error('the purchase hung while Redis was paused')
      expect(answer.statusCode).toBe(503)
      expect(answer.json()).toMatchObject({ code: 'DEPENDENCY_UNAVAILABLE' })
      expect(answer.headers['retry-after']).toBe('1')
      expect(elapsedMs).toBeLessThan(3000)
      expect((await purchase(app, late, saleId)).statusCode).toBe(201)
    })
  },
)
