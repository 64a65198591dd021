import { createHash, randomUUID } from 'node:crypto'
import type { Redis, Result } from 'ioredis'
import type pg from 'pg'
import { withRollback, type Queryable } from '../db/transaction.js'
import {
  type AppError,
  IdempotencyKeyInUseError,
  IdempotencyKeyReusedError,
  IdempotencyOutcomeUnknownError,
  IdempotentReplayError,
  InvalidIdempotencyKeyError,
} from '../errors.js'
import { defineScripts } from '../redis/scripts.js'
import {
  findResponseAfterWriters,
  findSavedResponse,
  insertResponsesIfAbsent,
  scopeId,
  type StoredResponse,
} from './idempotency.repository.js'

// Idempotency-Key, with the semantics of Stripe and the IETF draft:
// - keys are scoped per user; a finished request's status and body are replayed for 24 hours, with
//   `Idempotent-Replayed: true`; the same key while the first request still runs answers 409; the
//   same key on a different request (method, path or body) answers 422;
// - requests that fail validation never get here (validation runs before preHandlers) and are not
//   stored; nor are 429 and 409 PER_USER_LIMIT answers (nothing was done: a retry runs) and 5xx answers, which may come after
//   the effect committed (the answer to COMMIT was lost): the key then says "outcome unknown", and the
//   next attempt asks Postgres before it runs.
// Two stores, two jobs. Redis is the fast path: one script before the request (take the key, or
// replay, or refuse, or send it to Postgres) and one after it (record the answer). Postgres is the
// backstop: a response that comes with an effect (an order) is saved in the effect's own transaction,
// so if Redis forgets, or a 5xx hid the effect, a retry still finds it and the effect happens once.

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
export const LOCK_TTL_MS = 30_000
/**
 * How long a key whose request answered 5xx sends its retries to Postgres first: longer than any client
 * retry loop. A retry after that runs as new, and only Postgres' ON CONFLICT stands between it and a
 * second effect (on the gate path, only if the gate admits it).
 */
export const UNKNOWN_TTL_MS = 10 * 60_000
/** How often one request checks Postgres for a key whose unknown state keeps changing under it. */
export const VERIFY_ROUNDS = 3
/** How long a finished answer is replayed. */
export const KEEP_MS = 24 * 3600 * 1000
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

/**
 * The error to answer a refusal with (sold out, per-user limit, an empty cart, an order not payable):
 * the key's saved answer when Postgres has one, else the refusal itself. Redis may have forgotten a key
 * whose request succeeded (evicted, failed over), and the retry then runs as new; before it is refused,
 * Postgres' copy is asked, so the retry replays the original answer (201 and the same order) instead.
 * Only refusals pay this lookup, and only keyed ones: one statement, no transaction.
 */
export async function savedAnswerOr(
  db: Queryable,
  request: IdempotentRequest | null,
  refusal: AppError,
): Promise<AppError> {
  const saved = request && (await findSavedResponse(db, request))
  return saved ? replayOrReuseError(request, saved) : refusal
}

declare module 'ioredis' {
  interface RedisCommander<Context> {
    idempotencyBegin(
      key: string,
      hash: string,
      value: string,
      keepMs: number,
      verified: string,
    ): Result<string[], Context>
    idempotencyFinish(key: string, token: string, state: string, keepMs: number): Result<number, Context>
  }
}

/** What the key decided for a request: run it (holding the key), or answer with a stored response. */
export type KeyVerdict = { run: true; token: string } | { run: false; status: number; body: unknown }

/** How the request that held a key ended: its answer, an unknown outcome (a 5xx), or free the key (a 429). */
export type KeyEnding = { status: number; json: string } | 'unknown' | 'free'

/** A key's finished state in Redis (`json` is the serialised body); `token` is its owner's. */
export const finishedState = (request: IdempotentRequest, token: string, status: number, json: string) =>
  `{"h":${JSON.stringify(request.requestHash)},"t":"${token}","s":${status},"b":${json}}`

/** A key's outcome-unknown state in Redis: the next attempt asks Postgres first. */
export const unknownState = (request: IdempotentRequest, token: string) =>
  JSON.stringify({ h: request.requestHash, t: token, u: 1 })

/** Postgres' saved answer for the key, after any transaction still writing it has ended. */
export async function savedAnswer(
  primary: pg.Pool,
  request: IdempotentRequest,
): Promise<{ status: number; body: unknown } | null> {
  const saved = await withRollback(primary, (tx) => findResponseAfterWriters(tx, request)).catch(
    (err: Error) => {
      throw new IdempotencyOutcomeUnknownError(err)
    },
  )
  if (!saved) return null
  if (saved.requestHash !== request.requestHash) throw new IdempotencyKeyReusedError()
  return { status: saved.status, body: saved.body }
}

/**
 * The Redis half: an in-flight lock per key, then the finished answer under the same key; after a 5xx,
 * an "outcome unknown" state that sends the next attempt to the Postgres half (`primary`) first.
 */
export function createIdempotencyLocks(redis: Redis, primary: pg.Pool) {
  defineScripts(redis, import.meta.url, {
    idempotencyBegin: { file: 'idempotency-begin.lua', keys: 1 },
    idempotencyFinish: { file: 'idempotency-finish.lua', keys: 1 },
  })
  const redisKey = (request: IdempotentRequest) => `idem:{${request.userId}}:${request.key}`

  /**
   * Stores `value` under the key if it is free; otherwise returns the stored answer to give, or throws
   * 409 (running) or 422 (another request). A key whose outcome is unknown is settled in Postgres: its
   * saved answer is replayed (and stored back in Redis); with none, `value` takes the key's place.
   */
  async function claim(
    request: IdempotentRequest,
    value: string,
    keepMs: number,
  ): Promise<{ status: number; body: unknown } | null> {
    let verified = ''
    for (let round = 0; round < VERIFY_ROUNDS; round++) {
      // Concurrency: the begin script checks and takes the key in one atomic step, so of two requests
      // with one key exactly one runs; the other replays, waits its turn (409) or is refused (422). An
      // unknown outcome is replaced only if the key still holds the very state this request checked
      // in Postgres: of two retries that both found no answer there, one runs and the other hears 409.
      const [verdict, stored] = await redis.idempotencyBegin(
        redisKey(request),
        request.requestHash,
        value,
        keepMs,
        verified,
      )
      if (verdict === 'run') return null
      if (verdict === 'reused') throw new IdempotencyKeyReusedError()
      if (verdict === 'busy') throw new IdempotencyKeyInUseError()
      if (verdict === 'replay') {
        const state = JSON.parse(stored!) as { s: number; b: unknown }
        return { status: state.s, body: state.b }
      }
      const saved = await savedAnswer(primary, request)
      if (saved) {
        // Stored back only over the state just checked; if this fails, the next retry asks Postgres again.
        const finished = finishedState(request, '', saved.status, JSON.stringify(saved.body))
        await redis
          .idempotencyBegin(redisKey(request), request.requestHash, finished, KEEP_MS, stored!)
          .catch(() => {})
        return saved
      }
      verified = stored!
    }
    throw new IdempotencyKeyInUseError()
  }

  return {
    /** Takes the key for this request, or says which stored answer to give instead. */
    async take(request: IdempotentRequest): Promise<KeyVerdict> {
      const token = randomUUID()
      const lock = JSON.stringify({ h: request.requestHash, t: token })
      const stored = await claim(request, lock, LOCK_TTL_MS)
      return stored ? { run: false, ...stored } : { run: true, token }
    },

    /**
     * For an answer known without running the request (a sale known to be sold out): records it under a
     * free key in the same round trip and returns null, or returns the answer a used key already has.
     * A key whose earlier attempt ended in a 5xx is settled in Postgres first, so an order that did
     * commit is replayed rather than hidden behind the known answer.
     */
    answerKnown(
      request: IdempotentRequest,
      answer: AppError,
    ): Promise<{ status: number; body: unknown } | null> {
      const body = JSON.stringify({ code: answer.code, message: answer.message })
      return claim(request, finishedState(request, '', answer.statusCode, body), KEEP_MS)
    },

    /** Records how the request that holds the key ended (`json` is the serialised body). */
    async finish(request: IdempotentRequest, token: string, ending: KeyEnding) {
      const [state, keepMs] =
        ending === 'free'
          ? ['', 0]
          : ending === 'unknown'
            ? [unknownState(request, token), UNKNOWN_TTL_MS]
            : [finishedState(request, token, ending.status, ending.json), KEEP_MS]
      await redis.idempotencyFinish(redisKey(request), token, state, keepMs)
    },
  }
}
