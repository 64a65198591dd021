import type { FastifyInstance } from 'fastify'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startService, stopService } from '../../scripts/stack/stack.js'
import { buildTestApp } from '../../test/support/app.js'
import { localStackOptions, testStack } from '../../test/support/stack-env.js'

// The tests that stop a server need the local stack's servers: in containers they are skipped.
const local = testStack().options !== undefined

interface Readiness {
  status?: string
  code?: string
  message?: string
  checks: Record<string, string>
}

async function readiness(app: FastifyInstance) {
  const response = await app.inject({ url: '/health/ready' })
  return { status: response.statusCode, body: response.json<Readiness>() }
}

/** Polls readiness until it answers `status`; servers take a moment to go and to come back. */
async function readinessBecomes(app: FastifyInstance, status: number, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs
  let last = await readiness(app)
  while (last.status !== status && Date.now() < deadline) {
    await sleep(200)
    last = await readiness(app)
  }
  return last
}

describe('health', () => {
  let app: FastifyInstance

  beforeAll(async () => {
    app = await buildTestApp()
  })
  afterAll(async () => {
    await app.close()
  })

  it('when the process runs, then /health/live answers 200', async () => {
    const response = await app.inject({ url: '/health/live' })
    expect(response.statusCode).toBe(200)
  })

  it('when primary, replica and Redis answer, then /health/ready is 200 with every check up', async () => {
    const { status, body } = await readinessBecomes(app, 200)
    expect(status).toBe(200)
    expect(body.checks).toEqual({ primary: 'up', replica: 'up', redis: 'up' })
  })

  it.runIf(local)(
    'when Redis stops, then readiness is 503 naming redis, and 200 again once Redis is back (local stack only)',
    async () => {
      const stack = localStackOptions()
      await stopService(stack, 'redis')
      try {
        const down = await readinessBecomes(app, 503)
        expect(down.status).toBe(503)
        expect(down.body).toMatchObject({ code: 'NOT_READY', checks: { redis: 'down', primary: 'up' } })
        expect(down.body.message).toContain('redis')
      } finally {
        await startService(stack, 'redis')
      }
      expect((await readinessBecomes(app, 200)).body.checks.redis).toBe('up')
    },
  )

  it.runIf(local)(
    'when the replica stops, then readiness is 503 naming the replica, and 200 again once it is back (local stack only)',
    async () => {
      const stack = localStackOptions()
      await stopService(stack, 'replica')
      try {
        const down = await readinessBecomes(app, 503)
        expect(down.status).toBe(503)
        expect(down.body).toMatchObject({
          code: 'NOT_READY',
          checks: { replica: 'down', primary: 'up', redis: 'up' },
        })
        expect(down.body.message).toContain('replica')
      } finally {
        await startService(stack, 'replica')
      }
      expect((await readinessBecomes(app, 200)).body.checks.replica).toBe('up')
    },
  )

  it('when a row is written on the primary, then it becomes visible on the streaming replica', async () => {
    const marker = `replication-${Date.now()}-${Math.random()}`
    const { rows } = await app.db.primary.query<{ id: number }>(
      `INSERT INTO products (sku, name, price_cents) VALUES ($1, 'replication probe', 1) RETURNING id`,
      [marker],
    )
    const deadline = Date.now() + 5000
    let seen = 0
    while (seen === 0 && Date.now() < deadline) {
      seen = (await app.db.replica.query('SELECT 1 FROM products WHERE sku = $1', [marker])).rowCount ?? 0
      if (seen === 0) await sleep(20)
    }
    expect(seen).toBe(1)
    await app.db.primary.query('DELETE FROM products WHERE id = $1', [rows[0]!.id])
  })
})
