import { afterAll, describe, expect, it } from 'vitest'
import { loadConfig } from '../config.js'
import { isDependencyUnavailable } from '../dependency-errors.js'
import { createPool } from './pool.js'
import { withTransaction } from './transaction.js'

describe('a pool whose server goes away', () => {
  const config = loadConfig(process.env)
  const pool = createPool(config.DATABASE_URL, 2, config, 'pool-test')
  pool.on('error', () => undefined)

  afterAll(async () => {
    await pool.end()
  })

  it('when the connection of a transaction in progress is cut, then the transaction fails with an outage error and the process lives on', async () => {
    // pg_terminate_backend on itself: the server closes this very connection, as a crash or a restart
    // of the primary would. The client emits 'error' while it is checked out of the pool; without a
    // listener of its own that event is an uncaught exception (vitest would report it and fail).
    const failed = await withTransaction(pool, async (tx) => {
      await tx.query('SELECT pg_terminate_backend(pg_backend_pid())')
    }).catch((err: unknown) => err)

    expect(failed).toBeInstanceOf(Error)
    expect(isDependencyUnavailable(failed)).toBe(true)
    // The broken client was destroyed, not pooled again: the next transaction gets a working one.
    expect(await withTransaction(pool, async (tx) => (await tx.query('SELECT 1 AS one')).rows[0])).toEqual({
      one: 1,
    })
  })
})
