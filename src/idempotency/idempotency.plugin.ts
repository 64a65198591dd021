import { createHash, randomUUID } from 'node:crypto'
import type { FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { Result } from 'ioredis'
import type { PoolClient } from 'pg'
import {
  type AppError,
  IdempotencyKeyInUseError,
  IdempotencyKeyReusedError,
  IdempotentReplayError,
  InvalidIdempotencyKeyError,
} from '../errors.js'
import { luaScript } from '../redis/lua.js'
import { insertResponsesIfAbsent, scopeId, type ResponseRecord } from './idempotency.repository.js'

/** What a use case gets for a request that carries an Idempotency-Key. */
export interface IdempotentRequest {
  readonly record: Omit<ResponseRecord, 'status' | 'body'>
  /**
   * Stores the response in the transaction that makes the effect, so both commit or neither does.
   * If Postgres already holds a response for this key, it throws IdempotentReplayError instead and
   * the caller's transaction rolls back: the effect happens once, whatever Redis knew.
   */
  saveWithin(tx: PoolClient, status: number, body: unknown): Promise<void>
}

interface InFlight extends IdempotentRequest {
  redisKey: string
  token: string
}

declare module 'fastify' {
  interface FastifyInstance {
    /** preHandler for POSTs that honour an Idempotency-Key header (runs after authentication). */
    idempotent(request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | void>
    /**
     * Answers with `answer` without running the request, when the answer is known up front (a sale
     * known to be sold out), with the key's semantics in one round trip: a key seen before replays
     * (or is refused), a new key records `answer` for later replays.
     */
    answerIdempotently(request: FastifyRequest, reply: FastifyReply, answer: AppError): Promise<FastifyReply>
  }
  interface FastifyRequest {
    idempotency: InFlight | null
  }
}

declare module 'ioredis' {
  interface RedisCommander<Context> {
    idempotencyBegin(key: string, hash: string, value: string, keepMs: number): Result<string[], Context>
    idempotencyFinish(key: string, token: string, state: string, keepMs: number): Result<number, Context>
  }
}

/** How long the in-flight lock lives if its request dies without finishing. */
const LOCK_TTL_MS = 30_000
const KEEP_MS = 24 * 3600 * 1000
const KEY_PATTERN = /^[\x21-\x7e]{1,255}$/

function requestHash(request: FastifyRequest): string {
  return createHash('sha256')
    .update(`${request.method} ${request.url}\n${JSON.stringify(request.body ?? null)}`)
    .digest('base64url')
}

/**
 * Checks a batch of stored-response conflicts found by insertResponsesIfAbsent: the replay error for
 * one request (or 422 if the key was used for another request).
 */
export function replayOrReuseError(
  record: IdempotentRequest['record'],
  stored: { requestHash: string; status: number; body: unknown },
) {
  return stored.requestHash === record.requestHash
    ? new IdempotentReplayError(stored.status, stored.body)
    : new IdempotencyKeyReusedError()
}

// Idempotency-Key, with the semantics of Stripe and the IETF draft:
// - keys are scoped per user; a finished request's status and body are replayed for 24 hours, with
//   `Idempotent-Replayed: true`; the same key while the first request still runs answers 409; the
//   same key on a different request (method, path or body) answers 422;
// - requests that fail validation never get here (validation runs before preHandlers) and are not
//   stored; nor are 429 and 5xx answers, so the client may retry them.
// The fast path is Redis only: one script before and one after the request, or a single one when the
// answer is known up front (answerIdempotently), so a keyed purchase that ends SOLD_OUT never touches
// Postgres. Responses that come with an effect (an order) are also stored in Postgres
// in the effect's own transaction; that copy is the backstop if Redis forgets.
export default fp(
  async (app) => {
    app.redis.defineCommand('idempotencyBegin', {
      numberOfKeys: 1,
      lua: luaScript('idempotency-begin.lua', import.meta.url),
    })
    app.redis.defineCommand('idempotencyFinish', {
      numberOfKeys: 1,
      lua: luaScript('idempotency-finish.lua', import.meta.url),
    })
    app.decorateRequest('idempotency', null)

    /** Parses the key (400 if malformed) and names the request it belongs to. */
    function scopeOf(request: FastifyRequest) {
      const key = request.headers['idempotency-key']
      if (key === undefined) return null
      if (typeof key !== 'string' || !KEY_PATTERN.test(key)) throw new InvalidIdempotencyKeyError()
      const record = {
        userId: request.user.sub,
        key,
        method: request.method,
        path: request.url,
        requestHash: requestHash(request),
      }
      return { record, redisKey: `idem:{${record.userId}}:${key}` }
    }

    /** Replays, refuses, or returns true when the key was free and `value` is now stored under it. */
    async function begin(
      reply: FastifyReply,
      scope: { record: { requestHash: string }; redisKey: string },
      value: string,
      keepMs: number,
    ) {
      // Concurrency: the begin script checks and takes the key in one atomic step, so of two requests
      // with one key exactly one runs; the other replays, waits its turn (409) or is refused (422).
      const [verdict, stored] = await app.redis.idempotencyBegin(
        scope.redisKey,
        scope.record.requestHash,
        value,
        keepMs,
      )
      if (verdict === 'reused') throw new IdempotencyKeyReusedError()
      if (verdict === 'busy') throw new IdempotencyKeyInUseError()
      if (verdict === 'replay') {
        const state = JSON.parse(stored!) as { s: number; b: unknown }
        reply.header('idempotent-replayed', 'true').status(state.s).send(state.b)
        return false
      }
      return true
    }

    app.decorate(
      'answerIdempotently',
      async (request: FastifyRequest, reply: FastifyReply, answer: AppError) => {
        const scope = scopeOf(request)
        if (scope) {
          const body = { code: answer.code, message: answer.message }
          const state = JSON.stringify({ h: scope.record.requestHash, t: '', s: answer.statusCode, b: body })
          if (!(await begin(reply, scope, state, KEEP_MS))) return reply
        }
        throw answer
      },
    )

    app.decorate('idempotent', async (request: FastifyRequest, reply: FastifyReply) => {
      const scope = scopeOf(request)
      if (!scope) return
      const { record, redisKey } = scope
      const token = randomUUID()
      if (!(await begin(reply, scope, JSON.stringify({ h: record.requestHash, t: token }), LOCK_TTL_MS))) {
        return reply
      }
      request.idempotency = {
        record,
        redisKey,
        token,
        async saveWithin(tx, status, body) {
          const conflicts = await insertResponsesIfAbsent(tx, [{ ...record, status, body }])
          const found = conflicts.get(scopeId(record))
          if (found) throw replayOrReuseError(record, found)
        },
      }
    })

    // Records the answer (or frees the key after a 5xx) once the response is serialised.
    app.addHook('onSend', async (request, reply, payload) => {
      const inFlight = request.idempotency
      if (!inFlight) return
      request.idempotency = null
      // 429 (rate limited, or over the per-user limit until an order is cancelled) and 5xx answers say
      // "not now", not what the request did: the key is freed so a retry runs. The payload is already
      // JSON, so the stored state is assembled around it.
      const keep = reply.statusCode < 500 && reply.statusCode !== 429 && typeof payload === 'string'
      const state = keep
        ? `{"h":${JSON.stringify(inFlight.record.requestHash)},"t":"${inFlight.token}","s":${reply.statusCode},"b":${payload}}`
        : ''
      // If Redis is away the effect still stands: the lock frees itself after LOCK_TTL_MS, and a retry
      // then finds the Postgres copy.
      await app.redis
        .idempotencyFinish(inFlight.redisKey, inFlight.token, state, KEEP_MS)
        .catch((err: Error) => request.log.warn({ err }, 'could not record the idempotent response in Redis'))
    })
  },
  { name: 'idempotency', dependencies: ['postgres', 'redis', 'auth'] },
)
