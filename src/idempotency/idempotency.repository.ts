import type { Queryable } from '../db/transaction.js'
import { unnestColumns } from '../db/unnest.js'

export interface KeyScope {
  userId: string
  key: string
}

/** One string per (user, key), for maps and sets. */
export const scopeId = (scope: KeyScope) => `${scope.userId}\n${scope.key}`

export interface ResponseRecord extends KeyScope {
  method: string
  path: string
  requestHash: string
  status: number
  body: unknown
}

export interface StoredResponse {
  requestHash: string
  status: number
  body: unknown
}

/**
 * Inserts the records whose key is still free (or whose old record expired) and returns the keys
 * it could not insert, with what is stored for them. Runs inside the transaction of the effect the
 * records describe, so an order and its stored response commit together or not at all.
 * Concurrency: the primary key (user_id, key) is the backstop behind the Redis lock: if two requests
 * with one key ever ran at once, the second's INSERT waits for the first to commit, then finds it.
 */
export async function insertResponsesIfAbsent(
  tx: Queryable,
  records: ResponseRecord[],
): Promise<Map<string, StoredResponse>> {
  if (records.length === 0) return new Map()
  const params = unnestColumns(records, (r) => [
    r.userId,
    r.key,
    r.method,
    r.path,
    r.requestHash,
    r.status,
    JSON.stringify(r.body),
  ])
  const insert = () =>
    tx.query<{ user_id: string; key: string }>({
      // A prepared statement (named): every keyed purchase runs it.
      name: 'insert-responses-if-absent',
      text: `INSERT INTO idempotency_keys
         (user_id, key, request_method, request_path, request_hash, response_status, response_body)
       SELECT u, k, m, p, h, s, b::jsonb
         FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[], $7::text[])
           AS r (u, k, m, p, h, s, b)
       ON CONFLICT (user_id, key) DO NOTHING
       RETURNING user_id, key`,
      values: params,
    })
  let { rows: inserted } = await insert()
  if (inserted.length < records.length) {
    // Keys older than 24 hours are forgotten: drop them and try those records once more.
    const { rowCount } = await tx.query(
      `DELETE FROM idempotency_keys k USING unnest($1::uuid[], $2::text[]) AS r (u, kk)
        WHERE k.user_id = r.u AND k.key = r.kk AND k.expires_at <= now()`,
      [params[0], params[1]],
    )
    if (rowCount) inserted = inserted.concat((await insert()).rows)
  }
  const done = new Set(inserted.map((row) => scopeId({ userId: row.user_id, key: row.key })))
  const conflicts = records.filter((r) => !done.has(scopeId(r)))
  const stored = new Map<string, StoredResponse>()
  if (conflicts.length === 0) return stored
  const { rows } = await tx.query<{
    user_id: string
    key: string
    request_hash: string
    response_status: number
    response_body: unknown
  }>(
    `SELECT k.user_id, k.key, k.request_hash, k.response_status, k.response_body
       FROM idempotency_keys k JOIN unnest($1::uuid[], $2::text[]) AS r (u, kk) ON k.user_id = r.u AND k.key = r.kk`,
    unnestColumns(conflicts, (r) => [r.userId, r.key]),
  )
  for (const row of rows) {
    stored.set(scopeId({ userId: row.user_id, key: row.key }), {
      requestHash: row.request_hash,
      status: row.response_status,
      body: row.response_body,
    })
  }
  return stored
}

/**
 * The live saved response of one key, or null when there is none. Runs in a transaction the caller
 * rolls back: it first tries to insert the key as an empty record (which the rollback removes again).
 * Concurrency: that INSERT waits for any transaction that has written the same key and not ended yet,
 * so a COMMIT still running on the server when its client lost the connection is seen once it ends.
 * A plain SELECT would not wait: it would report "no answer" for an order about to commit, and the
 * retry would be answered as if the first attempt had never happened.
 */
export async function findResponseAfterWriters(
  tx: Queryable,
  record: Omit<ResponseRecord, 'status' | 'body'>,
): Promise<StoredResponse | null> {
  const { rowCount } = await tx.query(
    `INSERT INTO idempotency_keys (user_id, key, request_method, request_path, request_hash)
     VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (user_id, key) DO NOTHING`,
    [record.userId, record.key, record.method, record.path, record.requestHash],
  )
  if (rowCount === 1) return null
  const { rows } = await tx.query<{ request_hash: string; response_status: number; response_body: unknown }>(
    `SELECT request_hash, response_status, response_body FROM idempotency_keys
      WHERE user_id = $1 AND key = $2 AND expires_at > now() AND response_status IS NOT NULL`,
    [record.userId, record.key],
  )
  const row = rows[0]
  return row ? { requestHash: row.request_hash, status: row.response_status, body: row.response_body } : null
}

/**
 * The live saved response of one key, read without waiting for anyone: for a request that is about
 * to be refused and holds the key in Redis (so no other request with this key is running), whose
 * earlier attempt may have committed an answer that Redis has since forgotten.
 */
export async function findSavedResponse(db: Queryable, scope: KeyScope): Promise<StoredResponse | null> {
  const { rows } = await db.query<{ request_hash: string; response_status: number; response_body: unknown }>({
    name: 'idempotency-saved-response',
    text: `SELECT request_hash, response_status, response_body FROM idempotency_keys
            WHERE user_id = $1 AND key = $2 AND expires_at > now() AND response_status IS NOT NULL`,
    values: [scope.userId, scope.key],
  })
  const row = rows[0]
  return row ? { requestHash: row.request_hash, status: row.response_status, body: row.response_body } : null
}

export async function deleteExpiredKeys(db: Queryable, limit: number): Promise<number> {
  const { rowCount } = await db.query(
    `DELETE FROM idempotency_keys WHERE ctid IN
       (SELECT ctid FROM idempotency_keys WHERE expires_at <= now() LIMIT $1)`,
    [limit],
  )
  return rowCount ?? 0
}
