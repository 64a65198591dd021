import type { FastifyReply, FastifyRequest, preHandlerAsyncHookHandler } from 'fastify'
import fp from 'fastify-plugin'
import type { AppError } from '../errors.js'
import { createIdempotencyLocks, idempotentRequest, type IdempotentRequest } from './idempotency.js'

export interface IdempotencyOptions {
  /**
   * An answer known before any work (a sale this worker knows is sold out), or null. A keyed request
   * then costs one Redis round trip that records the answer under the key (or replays or refuses, as
   * the key's semantics say); an unkeyed one costs none.
   */
  earlyAnswer?(request: FastifyRequest): AppError | null
}

declare module 'fastify' {
  interface FastifyInstance {
    /** A preHandler for POSTs that honour an Idempotency-Key header (runs after authentication). */
    idempotent(options?: IdempotencyOptions): preHandlerAsyncHookHandler
  }
  interface FastifyRequest {
    /** The request's key, for the use case to save its response with the effect; null without a key. */
    idempotency: IdempotentRequest | null
    idempotencyToken: string | null
  }
}

const replay = (reply: FastifyReply, stored: { status: number; body: unknown }) =>
  reply.header('idempotent-replayed', 'true').status(stored.status).send(stored.body)

// The HTTP face of src/idempotency/idempotency.ts: reads the header, takes the key before the handler
// and records the answer after it. Use cases only see `request.idempotency`.
export default fp(
  async (app) => {
    const locks = createIdempotencyLocks(app.redis)
    app.decorateRequest('idempotency', null)
    app.decorateRequest('idempotencyToken', null)

    app.decorate('idempotent', (options: IdempotencyOptions = {}) => {
      return async function idempotent(request: FastifyRequest, reply: FastifyReply) {
        const keyed = idempotentRequest(request.user.sub, request.headers['idempotency-key'], request)
        const early = options.earlyAnswer?.(request) ?? null
        if (early) {
          const stored = keyed && (await locks.answerKnown(keyed, early))
          if (stored && !stored.run) return replay(reply, stored)
          throw early
        }
        if (!keyed) return
        const verdict = await locks.take(keyed)
        if (!verdict.run) return replay(reply, verdict)
        request.idempotency = keyed
        request.idempotencyToken = verdict.token
      }
    })

    // Records the answer (or frees the key after a 429 or 5xx) once the response is serialised.
    app.addHook('onSend', async (request, reply, payload) => {
      const keyed = request.idempotency
      const token = request.idempotencyToken
      if (!keyed || !token) return
      request.idempotencyToken = null
      const keep = reply.statusCode < 500 && reply.statusCode !== 429 && typeof payload === 'string'
      // If Redis is away the effect still stands: the lock frees itself after LOCK_TTL_MS, and a retry
      // then finds the Postgres copy.
      await locks
        .finish(keyed, token, reply.statusCode, keep ? (payload as string) : null)
        .catch((err: Error) => request.log.warn({ err }, 'could not record the idempotent response in Redis'))
    })
  },
  { name: 'idempotency', dependencies: ['postgres', 'redis', 'auth'] },
)
