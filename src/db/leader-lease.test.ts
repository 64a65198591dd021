import { randomInt } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import pg from 'pg'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { waitFor } from '../../scripts/stack/process.js'
import { startLeaderLease, type LeaderLease } from './leader-lease.js'

// The jobs leader lease against the test stack's primary. Each test uses a lock key of its own: the
// stack's own jobs process holds the real one.
const ROUND_MS = 200
const WAIT_MS = 10_000

describe('the jobs leader lease', () => {
  let admin: pg.Pool
  const leases: LeaderLease[] = []

  beforeAll(() => {
    admin = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 2 })
  })
  afterEach(async () => {
    await Promise.all(leases.splice(0).map((lease) => lease.close()))
  })
  afterAll(async () => {
    await admin.end()
  })

  function newLeases(count: number, key: number): LeaderLease[] {
    const made = Array.from({ length: count }, (_, n) =>
      startLeaderLease({
        connectionString: process.env.DATABASE_URL!,
        roundMs: ROUND_MS,
        checkTimeoutMs: 1000,
        applicationName: `lease-test-${key}-${n}`,
        key,
      }),
    )
    leases.push(...made)
    return made
  }

  /** The backend that holds the advisory lock `key`, as Postgres sees it. */
  async function holderPid(key: number): Promise<number | null> {
    const { rows } = await admin.query<{ pid: number }>(
      `SELECT pid FROM pg_locks
        WHERE locktype = 'advisory' AND granted AND classid = 0 AND objid = $1 AND objsubid = 1`,
      [key],
    )
    return rows[0]?.pid ?? null
  }

  const holders = (all: LeaderLease[]) => all.filter((lease) => lease.held())

  it('when three leases race for one key, then exactly one holds it, and still only one several rounds later', async () => {
    const key = randomInt(1_000_000, 2_000_000_000)
    const all = newLeases(3, key)

    await waitFor('one holder', () => holders(all).length === 1, WAIT_MS)
    const leader = holders(all)[0]
    for (let round = 0; round < 5; round++) {
      await sleep(ROUND_MS)
      expect(holders(all)).toEqual([leader])
    }
    expect(await holderPid(key)).not.toBeNull()
  })

  it("when the holder's backend is terminated, then it stops holding within a round and another lease takes over", async () => {
    const key = randomInt(1_000_000, 2_000_000_000)
    const all = newLeases(2, key)
    await waitFor('one holder', () => holders(all).length === 1, WAIT_MS)
    const [leader] = holders(all)
    const pid = await holderPid(key)
    expect(pid).not.toBeNull()

    await admin.query('SELECT pg_terminate_backend($1)', [pid])

    await waitFor('the old holder to let go', () => !leader!.held(), 5 * ROUND_MS + 1000)
    await waitFor('one holder', () => holders(all).length === 1, WAIT_MS)
    const next = await holderPid(key)
    expect(next).not.toBeNull()
    expect(next).not.toBe(pid)
    // Whichever lease leads now (the old one may win the race back on its new session), it is one.
    expect(holders(all)).toHaveLength(1)
  })

  it('when the holder closes, then the other lease takes over', async () => {
    const key = randomInt(1_000_000, 2_000_000_000)
    const all = newLeases(2, key)
    await waitFor('one holder', () => holders(all).length === 1, WAIT_MS)
    const [leader] = holders(all)
    const other = all.find((lease) => lease !== leader)!

    await leader!.close()

    expect(leader!.held()).toBe(false)
    await waitFor('the other lease to hold', () => other.held(), WAIT_MS)
    expect(holders(all)).toEqual([other])
  })
})
