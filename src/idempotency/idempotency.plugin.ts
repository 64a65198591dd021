import type { FastifyReply, FastifyRequest, preHandlerAsyncHookHandler } from 'fastify'
import fp from 'fastify-plugin'
import type { AppError } from '../errors.js'
import {
  createIdempotencyLocks,
  idempotentRequest,
  type IdempotentRequest,
  type KeyEnding,
} from './idempotency.js'

/** A request's Idempotency-Key, for a use case that takes it as one of its own steps. */
export interface RequestKey {
  /**
   * Takes the key; when `known` has an answer (a sale this worker knows is sold out), records that one
   * under the key instead, in one Redis round trip, or replays or refuses as the key's semantics say,
   * and throws it (none without a key). A key whose earlier attempt ended in a 5xx is checked in
   * Postgres first: an order that committed is replayed, never hidden behind the known answer.
   * Returns a stored answer to replay, or null to go on.
   */
  take(known?: () => AppError | null): Promise<{ status: number; body: unknown } | null>
  /** The key once taken; null without one. */
  readonly taken: IdempotentRequest | null
  /** The key as sent, not taken (400 if malformed; null without one), for a use case that keeps it itself. */
  parsed(): IdempotentRequest | null
}

declare module 'fastify' {
  interface FastifyInstance {
    /** A preHandler for POSTs that honour an Idempotency-Key header (runs after authentication). */
    idempotent(): preHandlerAsyncHookHandler
    /** The request's key, for a use case that takes it itself (the flash-sale purchase). */
    idempotencyKeyOf(request: FastifyRequest): RequestKey
  }
  interface FastifyRequest {
    /** The request's key, for the use case to save its response with the effect; null without a key. */
    idempotency: IdempotentRequest | null
    idempotencyToken: string | null
  }
}

/** Sends a stored answer again, marked as a replay. */
export const replay = (reply: FastifyReply, stored: { status: number; body: unknown }) =>
  reply.header('idempotent-replayed', 'true').status(stored.status).send(stored.body)

// The HTTP face of src/idempotency/idempotency.ts: reads the header, takes the key before the handler
// (or when a use case asks, as the purchase does after its eligibility check)
// and records the answer after it. Use cases only see `request.idempotency`.
export default fp(
  async (app) => {
    const locks = createIdempotencyLocks(app.redis, app.db.primary)
    app.decorateRequest('idempotency', null)
    app.decorateRequest('idempotencyToken', null)

    app.decorate('idempotencyKeyOf', (request: FastifyRequest): RequestKey => ({
      async take(known = () => null) {
        const keyed = idempotentRequest(request.user.sub, request.headers['idempotency-key'], request)
        const early = known()
        if (early) {
          const stored = keyed && (await locks.answerKnown(keyed, early))
          if (stored) return stored
          throw early
        }
        if (!keyed) return null
        const verdict = await locks.take(keyed)
        if (!verdict.run) return verdict
        request.idempotency = keyed
        request.idempotencyToken = verdict.token
        return null
      },
      get taken() {
        return request.idempotency
      },
      parsed: () => idempotentRequest(request.user.sub, request.headers['idempotency-key'], request),
    }))

    app.decorate('idempotent', () => {
      return async function idempotent(request: FastifyRequest, reply: FastifyReply) {
        const stored = await app.idempotencyKeyOf(request).take()
        if (stored) return replay(reply, stored)
      }
    })

    // Records how the request ended once the response is serialised.
    app.addHook('onSend', async (request, reply, payload) => {
      const keyed = request.idempotency
      const token = request.idempotencyToken
      if (!keyed || !token) return
      request.idempotencyToken = null
      // If Redis is away the effect still stands: the lock frees itself after LOCK_TTL_MS, and a retry
      // then finds the Postgres copy.
      await locks
        .finish(keyed, token, endingOf(reply.statusCode, reply.errorCode, payload))
        .catch((err: Error) => request.log.warn({ err }, 'could not record the idempotent response in Redis'))
    })
  },
  { name: 'idempotency', dependencies: ['postgres', 'redis', 'auth'] },
)

/**
 * What a keyed request's answer means for its key. A 5xx may come after the effect committed (the
 * answer to COMMIT was lost), so the outcome is unknown and the next attempt asks Postgres. A 429 and a
 * 409 PER_USER_LIMIT come before any effect, every one of them: the rate limits run before the purchase
 * path; the per-user limit refuses in the gate before a token exists, inside the Postgres path's
 * transaction (which then rolls back), or, in a batch, for a buyer whose order the committed transaction
 * did not write (had its COMMIT answer been lost, every buyer of the batch would hear 503). So after
 * either the key is freed and a retry runs (the per-user limit clears when a reservation expires, or when
 * an in-flight unit of a lost batch is given back). Anything else is the answer, replayed for 24 hours (a
 * body that is not a string cannot be stored: its key is freed too).
 */
function endingOf(status: number, errorCode: string | undefined, payload: unknown): KeyEnding {
  if (status >= 500) return 'unknown'
  if (status === 429 || errorCode === 'PER_USER_LIMIT' || typeof payload !== 'string') return 'free'
  return { status, json: payload }
}
