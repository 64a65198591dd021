import type { Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import type pg from 'pg'

type Query = (...args: unknown[]) => unknown

/** What the cut connection did with its COMMIT. */
export type LostCommit = 'committed' | 'rolled back'

/**
 * Makes the next COMMIT sent on `pool` (a plain COMMIT or withTransactionEndingIn's `last; COMMIT`)
 * lose its answer, the way a connection that breaks while COMMIT is in flight does, and decides
 * deterministically what Postgres did with it:
 * - 'committed': the COMMIT is sent with the socket's reading paused; once `observer` sees the backend
 *   idle again (Postgres committed and answered into the paused socket), the socket is destroyed, so
 *   the answer is never read.
 * - 'rolled back': the socket is destroyed just before the COMMIT is written: Postgres never gets it
 *   and rolls the transaction back when the connection ends.
 * Either way the client sees "Connection terminated unexpectedly" for its COMMIT. `cut` resolves once
 * the connection is gone. Clients checked out from now on are watched (their query is wrapped; the
 * wrapper passes everything through once it has fired); `observer` must be another pool.
 */
export function loseNextCommit(
  pool: pg.Pool,
  observer: pg.Pool,
  outcome: LostCommit,
  /** Which query commits: COMMIT by default; a statement run in autocommit is its own COMMIT. */
  commits: (query: unknown) => boolean = isCommit,
): { cut: Promise<void> } {
  let armed = true
  let done!: () => void
  const cut = new Promise<void>((resolve) => (done = resolve))

  const onAcquire = (client: pg.PoolClient) => {
    const original = client.query.bind(client) as Query
    client.query = ((...args: unknown[]) => {
      if (!armed || !commits(args[0])) return original(...args)
      armed = false
      pool.removeListener('acquire', onAcquire)
      const internals = client as unknown as { connection: { stream: Socket }; processID: number }
      const socket = internals.connection.stream
      if (outcome === 'rolled back') {
        socket.destroy()
        done()
        return original(...args)
      }
      socket.pause()
      const answer = original(...args)
      void untilIdle(observer, internals.processID).then(() => {
        socket.destroy()
        done()
      })
      return answer
    }) as typeof client.query
  }
  pool.on('acquire', onAcquire)
  return { cut }
}

export const isCommit = (text: unknown) => typeof text === 'string' && /\bCOMMIT$/.test(text.trim())

/** Waits until the backend `pid` has finished its transaction (its COMMIT ran). */
async function untilIdle(observer: pg.Pool, pid: number): Promise<void> {
  for (;;) {
    const { rows } = await observer.query<{ state: string }>(
      'SELECT state FROM pg_stat_activity WHERE pid = $1',
      [pid],
    )
    if (rows[0]?.state === 'idle') return
    await sleep(5)
  }
}
