import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loseNextCommit } from '../../test/support/lost-commit.js'
import { CommitOutcomeUnknownError } from '../errors.js'
import { withTransaction, withTransactionEndingIn } from './transaction.js'

// How transaction.ts tells "the COMMIT certainly failed" from "nobody knows", against the real primary.
// The unknown cases are made deterministic with locks: a second session holds a lock the COMMIT needs
// (a row lock for `last; COMMIT`, a deferred unique check for a plain COMMIT), the test waits until
// pg_stat_activity shows the backend waiting on that lock, so the COMMIT is certainly sent and not yet
// run, and only then terminates the backend.
describe('transactions whose COMMIT fails', () => {
  let pool: pg.Pool
  // Another session: holds locks, terminates backends and looks at the outcome.
  let other: pg.Pool
  const table = `commit_probe_${randomUUID().slice(0, 8)}`

  beforeAll(async () => {
    pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 2 })
    other = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 3 })
    await other.query(
      `CREATE TABLE ${table} (id int PRIMARY KEY, n int NOT NULL CHECK (n >= 0),
         tag int UNIQUE DEFERRABLE INITIALLY DEFERRED)`,
    )
    await other.query(`INSERT INTO ${table} (id, n) VALUES (1, 0)`)
  })
  afterAll(async () => {
    await other.query(`DROP TABLE ${table}`)
    await Promise.all([pool.end(), other.end()])
  })

  const exists = async (id: number) =>
    (await other.query(`SELECT 1 FROM ${table} WHERE id = $1`, [id])).rowCount === 1

  async function backendPid(tx: pg.PoolClient): Promise<number> {
    return (await tx.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid
  }

  async function untilWaitingForLock(pid: () => number): Promise<void> {
    for (;;) {
      const { rows } = await other.query<{ wait: string | null }>(
        'SELECT wait_event_type AS wait FROM pg_stat_activity WHERE pid = $1',
        [pid()],
      )
      if (rows[0]?.wait === 'Lock') return
      await sleep(5)
    }
  }

  /** A session that holds a transaction open with `sql` done, until `end()`. */
  async function holding(sql: string) {
    const holder = await other.connect()
    await holder.query('BEGIN')
    await holder.query(sql)
    return {
      async end(how: 'COMMIT' | 'ROLLBACK') {
        await holder.query(how)
        holder.release()
      },
    }
  }

  it('when the backend is terminated while `last; COMMIT` waits for a row lock, then the outcome is unknown and nothing was committed', async () => {
    const holder = await holding(`UPDATE ${table} SET n = n + 1 WHERE id = 1`)
    let pid = 0
    const attempt = withTransactionEndingIn(pool, async (tx) => {
      pid = await backendPid(tx)
      await tx.query(`INSERT INTO ${table} (id, n) VALUES (2, 0)`)
      return { last: `UPDATE ${table} SET n = n + 1 WHERE id = 1`, result: 'written' }
    }).catch((err: unknown) => err)
    await untilWaitingForLock(() => pid)

    await other.query('SELECT pg_terminate_backend($1)', [pid])

    const err = await attempt
    expect(err).toBeInstanceOf(CommitOutcomeUnknownError)
    expect(err).toMatchObject({ statusCode: 503, code: 'OUTCOME_UNKNOWN' })
    // Postgres' FATAL answer ends the session: it is the cause, and it does not say "rolled back".
    expect((err as Error).cause).toMatchObject({ code: '57P01', severity: 'FATAL' })
    await holder.end('ROLLBACK')
    expect(await exists(2)).toBe(false)
    // The broken client was destroyed, not pooled again: the pool still works.
    expect(await withTransaction(pool, async (tx) => backendPid(tx))).not.toBe(pid)
  })

  it('when the backend is terminated while a plain COMMIT waits for a deferred unique check, then the outcome is unknown', async () => {
    const holder = await holding(`INSERT INTO ${table} (id, n, tag) VALUES (10, 0, 10)`)
    let pid = 0
    const attempt = withTransaction(pool, async (tx) => {
      pid = await backendPid(tx)
      // The constraint is deferred: the INSERT does not wait, the COMMIT does (for the holder's row).
      await tx.query(`INSERT INTO ${table} (id, n, tag) VALUES (11, 0, 10)`)
    }).catch((err: unknown) => err)
    await untilWaitingForLock(() => pid)

    await other.query('SELECT pg_terminate_backend($1)', [pid])

    expect(await attempt).toBeInstanceOf(CommitOutcomeUnknownError)
    await holder.end('ROLLBACK')
    expect(await exists(11)).toBe(false)
  })

  it('when Postgres answers the COMMIT with an error (a deferred unique violation), then that error is thrown: a definite rollback', async () => {
    await other.query(`INSERT INTO ${table} (id, n, tag) VALUES (20, 0, 20)`)

    const err = await withTransaction(pool, async (tx) => {
      await tx.query(`INSERT INTO ${table} (id, n, tag) VALUES (21, 0, 20)`)
    }).catch((e: unknown) => e)

    expect(err).not.toBeInstanceOf(CommitOutcomeUnknownError)
    expect(err).toMatchObject({ code: '23505', severity: 'ERROR' })
    expect(await exists(21)).toBe(false)
  })

  it('when `last` is refused in the COMMIT round trip (a CHECK), then that error is thrown: a definite rollback', async () => {
    const err = await withTransactionEndingIn(pool, async (tx) => {
      await tx.query(`INSERT INTO ${table} (id, n) VALUES (25, 0)`)
      return { last: `UPDATE ${table} SET n = -1 WHERE id = 25`, result: null }
    }).catch((e: unknown) => e)

    expect(err).not.toBeInstanceOf(CommitOutcomeUnknownError)
    expect(err).toMatchObject({ code: '23514' })
    expect(await exists(25)).toBe(false)
  })

  it('when the connection breaks before COMMIT is sent, then the transaction is certainly rolled back and its own error is thrown', async () => {
    const err = await withTransaction(pool, async (tx) => {
      await tx.query(`INSERT INTO ${table} (id, n) VALUES (30, 0)`)
      const broken = new Promise((resolve) => tx.once('error', resolve))
      await other.query('SELECT pg_terminate_backend($1)', [await backendPid(tx)])
      await broken
    }).catch((e: unknown) => e)

    expect(err).not.toBeInstanceOf(CommitOutcomeUnknownError)
    expect((err as Error).message).toMatch(/terminating connection|Connection terminated/)
    expect(await exists(30)).toBe(false)
  })

  it('when Postgres committed but the answer to COMMIT was lost, then the outcome is unknown and the row exists', async () => {
    const { cut } = loseNextCommit(pool, other, 'committed')

    const err = await withTransaction(pool, async (tx) => {
      await tx.query(`INSERT INTO ${table} (id, n) VALUES (40, 0)`)
    }).catch((e: unknown) => e)

    await cut
    expect(err).toBeInstanceOf(CommitOutcomeUnknownError)
    expect(await exists(40)).toBe(true)
  })

  it('when the connection is cut just as COMMIT is written, then the outcome is unknown and Postgres rolled back', async () => {
    const { cut } = loseNextCommit(pool, other, 'rolled back')

    const err = await withTransactionEndingIn(pool, async (tx) => {
      await tx.query(`INSERT INTO ${table} (id, n) VALUES (50, 0)`)
      return { last: `UPDATE ${table} SET n = n + 1 WHERE id = 50`, result: null }
    }).catch((e: unknown) => e)

    await cut
    expect(err).toBeInstanceOf(CommitOutcomeUnknownError)
    expect(await exists(50)).toBe(false)
  })
})
