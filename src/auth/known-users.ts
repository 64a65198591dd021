import { LRUCache } from 'lru-cache'

/** Which of these user ids have a row, from the primary (a fresh guest may not be on the replica yet). */
export type ExistingUsers = (userIds: string[]) => Promise<Set<string>>

// Every worker remembers, per user id, whether the row exists: a token's user is looked up once per
// worker and TTL, not once per request. Ids are random UUIDs that are never reused, so "absent" is
// remembered as safely as "present". A stampede brings thousands of users the worker has never seen,
// all at once: their lookups are batched, one query for every user first seen in the same event-loop
// turn, so the crowd costs a handful of queries rather than one per buyer.
const MAX_USERS = 100_000

export function createKnownUsers(deps: { existing: ExistingUsers; ttlMs: number }) {
  const lookUp = batchedPerTurn(deps.existing)
  // fetch() shares one lookup between the concurrent first requests of a user.
  const known = new LRUCache<string, boolean>({
    max: MAX_USERS,
    ttl: deps.ttlMs,
    fetchMethod: (userId) => lookUp(userId),
  })
  return {
    /**
     * True when the user exists, or when it could not be checked (the lookup failed): the check spares
     * the storefront a 500 for a deleted user, while the foreign keys of every write stay the authority.
     */
    async exists(userId: string): Promise<boolean> {
      try {
        return (await known.fetch(userId)) ?? true
      } catch {
        return true
      }
    },
  }
}

/** Collects the ids asked for during one event-loop turn and answers them all with one call. */
function batchedPerTurn(existing: ExistingUsers): (userId: string) => Promise<boolean> {
  let batch: { ids: Set<string>; found: Promise<Set<string>> } | null = null
  return async (userId) => {
    if (!batch) {
      const ids = new Set<string>()
      const found = new Promise((turnEnds) => setImmediate(turnEnds)).then(() => {
        batch = null
        return existing([...ids])
      })
      batch = { ids, found }
    }
    const { ids, found } = batch
    ids.add(userId)
    return (await found).has(userId)
  }
}
