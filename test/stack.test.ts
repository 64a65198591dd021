import pg from 'pg'
import { afterAll, describe, expect, it } from 'vitest'
import { REPLICATION_SLOT } from '../scripts/stack/postgres.js'
import { stackHandles, startService, stopService } from '../scripts/stack/stack.js'
import { loadConfig } from '../src/config.js'
import { redisPing } from '../scripts/stack/redis.js'
import { testStack } from './support/stack-env.js'

const stack = testStack()
const clients: pg.Client[] = []

async function query<T extends pg.QueryResultRow>(url: string, sql: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: url })
  // Kept open until afterAll: the crash test below ends its session, which must not be an uncaught error.
  client.on('error', () => undefined)
  clients.push(client)
  await client.connect()
  return (await client.query<T>(sql)).rows
}

const redisAnswers = (url: string) => redisPing(Number(new URL(url).port), new URL(url).hostname)

afterAll(async () => {
  await Promise.all(clients.map((client) => client.end().catch(() => undefined)))
})

describe('the test stack', () => {
  it('when asked, the primary accepts writes and is not in recovery', async () => {
    const [row] = await query<{ recovery: boolean }>(
      stack.databaseUrl,
      'SELECT pg_is_in_recovery() AS recovery',
    )
    expect(row?.recovery).toBe(false)
  })

  it('when asked, the replica answers queries as a hot standby in recovery', async () => {
    const [row] = await query<{ recovery: boolean }>(
      stack.replicaUrl,
      'SELECT pg_is_in_recovery() AS recovery',
    )
    expect(row?.recovery).toBe(stack.runtime === 'local' || stack.replicaUrl !== stack.databaseUrl)
  })

  it.runIf(stack.runtime === 'containers' || stack.options?.services.replica)(
    'then the primary shows the replica streaming from it',
    async () => {
      const rows = await query<{ state: string }>(stack.databaseUrl, 'SELECT state FROM pg_stat_replication')
      expect(rows.map((r) => r.state)).toContain('streaming')
    },
  )

  it('when pinged, Redis answers PONG', async () => {
    expect(await redisAnswers(stack.redisUrl)).toBe(true)
  })

  it.runIf(stack.nginxUrl)('when the app runs, nginx answers GET /health/live with 200', async () => {
    const response = await fetch(`${stack.nginxUrl}/health/live`)
    expect(response.status).toBe(200)
  })

  it('when a test calls loadConfig(), it gets the test stack through process.env', () => {
    const config = loadConfig()
    expect([config.DATABASE_URL, config.DATABASE_REPLICA_URL, config.REDIS_URL]).toEqual([
      stack.databaseUrl,
      stack.replicaUrl,
      stack.redisUrl,
    ])
  })

  it.runIf(stack.options?.services.replica)(
    'when the primary crashes (pg_ctl -m immediate) before any checkpoint and comes back, the replica streams again from its slot',
    async () => {
      const options = stack.options!
      const handles = await stackHandles(options)
      const onPrimary = async (sql: string) => {
        const client = handles.superuser('primary', 'postgres')
        await client.connect()
        try {
          return (await client.query<Record<string, string | null>>(sql)).rows
        } finally {
          await client.end()
        }
      }
      // The slot as a fresh stack has it: made by the stack, never written by a checkpoint since.
      await stopService(options, 'replica')
      await onPrimary(`SELECT pg_drop_replication_slot('${REPLICATION_SLOT}')`)
      await startService(options, 'primary')
      await startService(options, 'replica')
      // The replica stops where it is; the primary moves on three WAL segments without it and crashes.
      await stopService(options, 'replica')
      for (let i = 0; i < 3; i++) {
        await onPrimary('CREATE TEMP TABLE wal_filler AS SELECT 1 AS x; SELECT pg_switch_wal()')
      }
      await handles.crashPostgres('primary')
      await startService(options, 'primary')
      const [slot] = await onPrimary(
        `SELECT restart_lsn::text FROM pg_replication_slots WHERE slot_name = '${REPLICATION_SLOT}'`,
      )
      expect(slot?.restart_lsn).not.toBeNull()
      // Its end-of-recovery checkpoint kept the WAL the replica resumes from.
      await startService(options, 'replica')
    },
    90_000,
  )

  it.runIf(stack.options?.services.redis)(
    'when Redis is stopped and started again, it answers again (local stack only: it stops Redis)',
    async () => {
      const options = stack.options!
      await stopService(options, 'redis')
      expect(await redisAnswers(stack.redisUrl)).toBe(false)
      await startService(options, 'redis')
      expect(await redisAnswers(stack.redisUrl)).toBe(true)
    },
  )
})
