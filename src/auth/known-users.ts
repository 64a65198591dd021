import { LRUCache } from 'lru-cache'
import type { UserStanding } from './users.repository.js'

/** The standing of each of these user ids that has a row, from the primary (a fresh guest may not be on the replica yet). */
export type StandingsOf = (userIds: string[]) => Promise<Map<string, UserStanding>>

// Every worker remembers, per user id, the user's standing (role, guest or not, token version), or that
// the row does not exist: a token's user is looked up once per worker and TTL, not once per request.
// Ids are random UUIDs that are never reused, so "absent" is remembered as safely as "present". A change
// to the row (logout, a new password, a new role) is announced to every worker, which forgets the user
// (src/auth/user-changes.ts); the TTL bounds how long a worker that missed the announcement acts on the
// old standing. A stampede brings thousands of users the worker has never seen, all at once: their
// lookups are batched, one query for every user first seen in the same event-loop turn, so the crowd
// costs a handful of queries rather than one per buyer.
const MAX_USERS = 100_000

export function createKnownUsers(deps: { standingsOf: StandingsOf; ttlMs: number }) {
  const lookUp = batchedPerTurn(deps.standingsOf)
  // fetch() shares one lookup between the concurrent first requests of a user. `false`: no such user.
  const known = new LRUCache<string, UserStanding | false>({
    max: MAX_USERS,
    ttl: deps.ttlMs,
    fetchMethod: async (userId) => (await lookUp(userId)) ?? false,
  })
  let forgets = 0
  return {
    /**
     * The user's standing; `null` when the user does not exist; `undefined` when it could not be checked
     * (the lookup failed): the caller then acts on the token's own claims, which spares the storefront a
     * 500 while the primary is away, and the foreign keys of every write stay the authority.
     */
    async standing(userId: string): Promise<UserStanding | null | undefined> {
      for (let attempt = 1; ; attempt++) {
        const forgetsBefore = forgets
        try {
          const found = await known.fetch(userId)
          return found === false ? null : found
        } catch {
          // Concurrency: a forget during the lookup cut it off (see forget): the row changed meanwhile,
          // so read it again rather than fall back on the token's claims, which the change may have voided.
          if (forgets === forgetsBefore || attempt === 3) return undefined
        }
      }
    },

    /**
     * Forgets a user whose row changed: the next request reads the row again.
     * Concurrency: deleting also cuts off a lookup in flight for the user (lru-cache aborts it and keeps
     * its result out of the cache), so a standing read before the change is not remembered after it;
     * the request that was waiting for that lookup reads the row again (see standing).
     */
    forget(userId: string): void {
      forgets++
      known.delete(userId)
    },

    /** Forgets everyone: changes may have been announced while this worker could not hear them. */
    forgetAll(): void {
      forgets++
      known.clear()
    },
  }
}

export type KnownUsers = ReturnType<typeof createKnownUsers>

/** Collects the ids asked for during one event-loop turn and answers them all with one call. */
function batchedPerTurn(standingsOf: StandingsOf): (userId: string) => Promise<UserStanding | undefined> {
  let batch: { ids: Set<string>; found: Promise<Map<string, UserStanding>> } | null = null
  return async (userId) => {
    if (!batch) {
      const ids = new Set<string>()
      const found = new Promise((turnEnds) => setImmediate(turnEnds)).then(() => {
        batch = null
        return standingsOf([...ids])
      })
      batch = { ids, found }
    }
    const { ids, found } = batch
    ids.add(userId)
    return (await found).get(userId)
  }
}
