import { createHash, randomUUID } from 'node:crypto'
import type { Redis, Result } from 'ioredis'
import type { Queryable } from '../db/transaction.js'
import {
  type AppError,
  IdempotencyKeyInUseError,
  IdempotencyKeyReusedError,
  IdempotentReplayError,
  InvalidIdempotencyKeyError,
} from '../errors.js'
import { defineScripts } from '../redis/scripts.js'
import {
  deleteResponses,
  insertResponsesIfAbsent,
  scopeId,
  type StoredResponse,
} from './idempotency.repository.js'

// Idempotency-Key, with the semantics of Stripe and the IETF draft:
// - keys are scoped per user; a finished request's status and body are replayed for 24 hours, with
//   `Idempotent-Replayed: true`; the same key while the first request still runs answers 409; the
//   same key on a different request (method, path or body) answers 422;
// - requests that fail validation never get here (validation runs before preHandlers) and are not
//   stored; nor are 429 and 5xx answers, so the client may retry them.
// Two stores, two jobs. Redis is the fast path: one script before the request (take the key, or
// replay, or refuse) and one after it (record the answer). Postgres is the backstop: a response that
// comes with an effect (an order) is saved in the effect's own transaction, so if Redis forgets, a
// retry still finds it and the effect happens once.

/** A request that carries an Idempotency-Key, as a use case sees it. */
export interface IdempotentRequest {
  userId: string
  key: string
  method: string
  path: string
  /** Method, path and body: the same key on another request is refused. */
  requestHash: string
}

/** How long the in-flight lock lives if its request dies without finishing. */
const LOCK_TTL_MS = 30_000
/** How long a finished answer is replayed. */
const KEEP_MS = 24 * 3600 * 1000
const KEY_PATTERN = /^[\x21-\x7e]{1,255}$/

/** Reads the key of a request (400 if malformed); null when it has none. */
export function idempotentRequest(
  userId: string,
  key: unknown,
  request: { method: string; url: string; body: unknown },
): IdempotentRequest | null {
  if (key === undefined) return null
  if (typeof key !== 'string' || !KEY_PATTERN.test(key)) throw new InvalidIdempotencyKeyError()
  const requestHash = createHash('sha256')
    .update(`${request.method} ${request.url}\n${JSON.stringify(request.body ?? null)}`)
    .digest('base64url')
  return { userId, key, method: request.method, path: request.url, requestHash }
}

/** The stored answer for a key found taken: the replay for the same request, 422 for another one. */
export function replayOrReuseError(request: IdempotentRequest, stored: StoredResponse): AppError {
  return stored.requestHash === request.requestHash
    ? new IdempotentReplayError(stored.status, stored.body)
    : new IdempotencyKeyReusedError()
}

/**
 * Saves the response in the transaction that makes the effect, so both commit or neither does. If
 * Postgres already holds a response for this key, it throws the replay (or 422) instead and the
 * caller's transaction rolls back: the effect happens once, whatever Redis knew.
 */
export async function saveResponse(
  tx: Queryable,
  request: IdempotentRequest,
  status: number,
  body: unknown,
): Promise<void> {
  const conflict = (await saveResponses(tx, [{ request, status, body }])).get(request)
  if (conflict) throw conflict
}

/**
 * saveResponse for many requests in one statement (a batch of orders). Returns, for each request whose
 * key Postgres had answered already, the error to answer it with; the others are saved.
 */
export async function saveResponses(
  tx: Queryable,
  responses: { request: IdempotentRequest; status: number; body: unknown }[],
): Promise<Map<IdempotentRequest, AppError>> {
  const stored = await insertResponsesIfAbsent(
    tx,
    responses.map(({ request, status, body }) => ({ ...request, status, body })),
  )
  const conflicts = new Map<IdempotentRequest, AppError>()
  for (const { request } of responses) {
    const found = stored.get(scopeId(request))
    if (found) conflicts.set(request, replayOrReuseError(request, found))
  }
  return conflicts
}

/** Drops saved responses again, inside the same transaction: their request ended without an effect. */
export async function forgetResponses(tx: Queryable, requests: IdempotentRequest[]): Promise<void> {
  if (requests.length > 0) await deleteResponses(tx, requests)
}

declare module 'ioredis' {
  interface RedisCommander<Context> {
    idempotencyBegin(key: string, hash: string, value: string, keepMs: number): Result<string[], Context>
    idempotencyFinish(key: string, token: string, state: string, keepMs: number): Result<number, Context>
  }
}

/** What the Redis fast path decided for a key: run the request, or answer with a stored response. */
export type KeyVerdict = { run: true; token: string } | { run: false; status: number; body: unknown }

/** The Redis half: an in-flight lock per key, then the finished answer under the same key. */
export function createIdempotencyLocks(redis: Redis) {
  defineScripts(redis, import.meta.url, {
    idempotencyBegin: { file: 'idempotency-begin.lua', keys: 1 },
    idempotencyFinish: { file: 'idempotency-finish.lua', keys: 1 },
  })
  const redisKey = (request: IdempotentRequest) => `idem:{${request.userId}}:${request.key}`

  async function begin(request: IdempotentRequest, value: string, keepMs: number) {
    // Concurrency: the begin script checks and takes the key in one atomic step, so of two requests
    // with one key exactly one runs; the other replays, waits its turn (409) or is refused (422).
    const [verdict, stored] = await redis.idempotencyBegin(
      redisKey(request),
      request.requestHash,
      value,
      keepMs,
    )
    if (verdict === 'reused') throw new IdempotencyKeyReusedError()
    if (verdict === 'busy') throw new IdempotencyKeyInUseError()
    if (verdict === 'replay') {
      const state = JSON.parse(stored!) as { s: number; b: unknown }
      return { status: state.s, body: state.b }
    }
    return null
  }

  return {
    /** Takes the key for this request, or says which stored answer to give instead. */
    async take(request: IdempotentRequest): Promise<KeyVerdict> {
      const token = randomUUID()
      const replay = await begin(request, JSON.stringify({ h: request.requestHash, t: token }), LOCK_TTL_MS)
      return replay ? { run: false, ...replay } : { run: true, token }
    },

    /**
     * For an answer known without running the request (a sale known to be sold out): records it under a
     * free key in the same round trip, or returns the answer a used key already has.
     */
    async answerKnown(request: IdempotentRequest, answer: AppError): Promise<KeyVerdict | null> {
      const body = { code: answer.code, message: answer.message }
      const state = JSON.stringify({ h: request.requestHash, t: '', s: answer.statusCode, b: body })
      const replay = await begin(request, state, KEEP_MS)
      return replay && { run: false, ...replay }
    },

    /**
     * Records the answer of the request that holds the key (`json` is the serialised body), or gives
     * the key up when `json` is null (429 and 5xx answers say "not now", so a retry must run).
     */
    async finish(request: IdempotentRequest, token: string, status: number, json: string | null) {
      const state =
        json === null
          ? ''
          : `{"h":${JSON.stringify(request.requestHash)},"t":"${token}","s":${status},"b":${json}}`
      await redis.idempotencyFinish(redisKey(request), token, state, KEEP_MS)
    },
  }
}
