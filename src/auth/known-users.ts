import { LRUCache } from 'lru-cache'

/** Whether a user row exists, from the primary (a fresh guest may not be on the replica yet). */
export type UserExists = (userId: string) => Promise<boolean>

// Every worker remembers, per user id, whether the row exists: a token's user is looked up once per
// worker and TTL, not once per request. Ids are random UUIDs that are never reused, so "absent" is
// remembered as safely as "present".
const MAX_USERS = 100_000

export function createKnownUsers(deps: { exists: UserExists; ttlMs: number }) {
  // fetch() shares one lookup between the concurrent first requests of a user.
  const known = new LRUCache<string, boolean>({
    max: MAX_USERS,
    ttl: deps.ttlMs,
    fetchMethod: (userId) => deps.exists(userId),
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

export type KnownUsers = ReturnType<typeof createKnownUsers>
