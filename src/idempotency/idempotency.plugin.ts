import { createHash, randomUUID } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type { FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { Result } from 'ioredis'
import type { PoolClient } from 'pg'
import { PG, pgErrorCode } from '../db/transaction.js'
import { IdempotencyKeyInUseError, IdempotencyKeyReusedError, InvalidIdempotencyKeyError } from '../errors.js'
import { findLiveKey, insertResponse, type ResponseToStore } from './idempotency.repository.js'

/**
 * What a use case needs to make its effect and the stored response one atomic commit: it calls
 * `saveWithin(tx, status, body)` in the same transaction that writes the order.
 */
export interface IdempotentRequest {
  saveWithin(tx: PoolClient, status: number, body: unknown): Promise<void>
}

interface InFlight extends IdempotentRequest {
  record: Omit<ResponseToStore, 'status' | 'body'>
  lockKey: string
  lockToken: string
  savedWithEffect: boolean
}

declare module 'fastify' {
  interface FastifyInstance {
    /** preHandler for POSTs that honour an Idempotency-Key header (after `authenticate`). */
    idempotent(request: FastifyRequest, reply: FastifyReply): Promise<void>
  }
  interface FastifyRequest {
    idempotency: InFlight | null
  }
}

declare module 'ioredis' {
  interface RedisCommander<Context> {
    unlockIfOwner(key: string, token: string): Result<number, Context>
  }
}

/** How long the in-flight lock lives if its request dies without releasing it. */
const LOCK_TTL_MS = 30_000
const KEY_PATTERN = /^[\x21-\x7e]{1,255}$/

function requestHash(request: FastifyRequest): string {
  return createHash('sha256')
    .update(`${request.method} ${request.url}\n${JSON.stringify(request.body ?? null)}`)
    .digest('base64url')
}

function replay(reply: FastifyReply, status: number, body: unknown) {
  return reply.header('idempotent-replayed', 'true').status(status).send(body)
}

// Idempotency-Key, with the semantics of Stripe and the IETF draft:
// - keys are scoped per user; a completed request's status and body are replayed for 24 hours,
//   with `Idempotent-Replayed: true`;
// - the same key while the first request still runs answers 409; with another body, 422;
// - requests that fail validation never get here (validation runs before preHandlers), so they are
//   not stored; 5xx answers are not stored either, so the client may retry them.
export default fp(
  async (app) => {
    app.redis.defineCommand('unlockIfOwner', {
      numberOfKeys: 1,
      lua: readFileSync(new URL('./unlock-if-owner.lua', import.meta.url), 'utf8'),
    })
    app.decorateRequest('idempotency', null)

    app.decorate('idempotent', async (request: FastifyRequest, reply: FastifyReply) => {
      const key = request.headers['idempotency-key']
      if (key === undefined) return
      if (typeof key !== 'string' || !KEY_PATTERN.test(key)) throw new InvalidIdempotencyKeyError()
      const scope = { userId: request.user.sub, key }
      const hash = requestHash(request)

      const stored = await findLiveKey(app.db.primary, scope)
      if (stored && stored.requestHash !== hash) throw new IdempotencyKeyReusedError()
      if (stored?.status) return replay(reply, stored.status, stored.body)

      // Concurrency: the Redis lock (SET NX with a TTL) lets exactly one request per key run at once;
      // the others answer 409 at once instead of racing to create a second order. The TTL frees the
      // key if the worker dies; the primary key on idempotency_keys backs this up in Postgres.
      const lockKey = `idem:${scope.userId}:${key}`
      const lockToken = `${hash}:${randomUUID()}`
      const locked = await app.redis.set(lockKey, lockToken, 'PX', LOCK_TTL_MS, 'NX')
      if (locked !== 'OK') {
        const holder = await app.redis.get(lockKey)
        if (holder && !holder.startsWith(`${hash}:`)) throw new IdempotencyKeyReusedError()
        throw new IdempotencyKeyInUseError()
      }
      // The first request may have finished between our read and our lock: look once more.
      const finished = await findLiveKey(app.db.primary, scope)
      if (finished?.status) {
        await app.redis.unlockIfOwner(lockKey, lockToken)
        if (finished.requestHash !== hash) throw new IdempotencyKeyReusedError()
        return replay(reply, finished.status, finished.body)
      }

      const inFlight: InFlight = {
        record: { ...scope, method: request.method, path: request.url, requestHash: hash },
        lockKey,
        lockToken,
        savedWithEffect: false,
        async saveWithin(tx, status, body) {
          try {
            await insertResponse(tx, { ...inFlight.record, status, body: JSON.stringify(body) }, 'fail')
          } catch (err) {
            // Only possible if our lock expired and a retry finished first: our transaction rolls back.
            if (pgErrorCode(err) === PG.uniqueViolation) throw new IdempotencyKeyInUseError()
            throw err
          }
          inFlight.savedWithEffect = true
        },
      }
      request.idempotency = inFlight
    })

    app.addHook('onSend', async (request, reply, payload) => {
      const inFlight = request.idempotency
      if (!inFlight || inFlight.savedWithEffect || reply.statusCode >= 500 || typeof payload !== 'string')
        return
      // An outcome without a database effect of its own (409 OUT_OF_STOCK, 402 declined) is stored here.
      await insertResponse(
        app.db.primary,
        { ...inFlight.record, status: reply.statusCode, body: payload },
        'ignore',
      )
    })

    app.addHook('onResponse', async (request) => {
      const inFlight = request.idempotency
      if (inFlight) await app.redis.unlockIfOwner(inFlight.lockKey, inFlight.lockToken)
    })
  },
  { name: 'idempotency', dependencies: ['postgres', 'redis', 'auth'] },
)
