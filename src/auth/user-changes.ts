import { setTimeout as sleep } from 'node:timers/promises'
import type { Redis } from 'ioredis'
import { INVALIDATION_CHANNEL } from '../cache/two-level-cache.js'
import type { Log } from '../log.js'

// A user's row changed (logout, new password, new role): every worker must forget what it remembers of
// the user (src/auth/known-users.ts). The announcement travels on the cache's invalidation channel,
// the one pub/sub mechanism of the app, as the ref `user:<id>`; the two-level cache ignores a ref of a
// family it never declared, and this listener ignores every other ref.
//
// Redis key layout: none; only the channel `cache:invalidate`, message `user:<id>`.

const REF_PREFIX = 'user:'

export function createUserChanges(deps: {
  publisher: Redis
  /** A connection of its own: a subscribed connection cannot run other commands. */
  subscriber: Redis
  /** Called with the id of a user whose row changed, on every worker. */
  forget: (userId: string) => void
  /** Called after every (re)connect of the subscriber. */
  forgetAll: () => void
  log: Pick<Log, 'warn'>
}) {
  const { publisher, subscriber } = deps
  subscriber.on('message', (channel: string, ref: string) => {
    if (channel === INVALIDATION_CHANNEL && ref.startsWith(REF_PREFIX))
      deps.forget(ref.slice(REF_PREFIX.length))
  })
  // Concurrency: pub/sub is fire-and-forget; announcements published while this connection was down
  // are lost. After every (re)connect the worker forgets every user rather than keep honouring a token
  // that was revoked meanwhile.
  subscriber.on('ready', () => deps.forgetAll())
  subscriber.on('error', () => undefined) // the app's own connection already logs Redis errors

  return {
    /** Subscribes; waits at most a moment, so a worker starts even with Redis down. */
    async start(): Promise<void> {
      const subscribed = subscriber.subscribe(INVALIDATION_CHANNEL).catch((err: unknown) => {
        deps.log.warn({ err }, 'user changes: subscribing failed; workers rely on KNOWN_USER_TTL_SECONDS')
      })
      await Promise.race([subscribed, sleep(2000, undefined, { ref: false })])
    },

    /**
     * Call after the change committed: this worker forgets the user at once, the others when the
     * message reaches them (milliseconds). If Redis cannot take the message, the others forget the user
     * within KNOWN_USER_TTL_SECONDS; the change itself stands.
     */
    async announce(userId: string): Promise<void> {
      deps.forget(userId)
      try {
        await publisher.publish(INVALIDATION_CHANNEL, `${REF_PREFIX}${userId}`)
      } catch (err) {
        deps.log.warn(
          { err, userId },
          'user changes: announcement failed; other workers forget within the TTL',
        )
      }
    },

    close(): void {
      subscriber.disconnect()
    },
  }
}

export type UserChanges = ReturnType<typeof createUserChanges>
