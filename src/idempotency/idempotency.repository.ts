import type { Queryable } from '../db/transaction.js'

export interface StoredResponse {
  requestHash: string
  /** null while the first request is still running (only possible inside its own transaction). */
  status: number | null
  body: unknown
}

export interface KeyScope {
  userId: string
  key: string
}

/** The live record of a key; an expired one (older than 24 hours) is deleted and reads as absent. */
export async function findLiveKey(db: Queryable, scope: KeyScope): Promise<StoredResponse | undefined> {
  await db.query('DELETE FROM idempotency_keys WHERE user_id = $1 AND key = $2 AND expires_at <= now()', [
    scope.userId,
    scope.key,
  ])
  const { rows } = await db.query<{
    request_hash: string
    response_status: number | null
    response_body: unknown
  }>(
    'SELECT request_hash, response_status, response_body FROM idempotency_keys WHERE user_id = $1 AND key = $2',
    [scope.userId, scope.key],
  )
  const row = rows[0]
  return row && { requestHash: row.request_hash, status: row.response_status, body: row.response_body }
}

export interface ResponseToStore extends KeyScope {
  method: string
  path: string
  requestHash: string
  status: number
  /** The response body as JSON text. */
  body: string
}

/**
 * Records the outcome of a request. Inside a use case's transaction it commits together with the
 * order it describes; `onConflict: 'ignore'` is for outcomes stored afterwards (a 409 SOLD_OUT).
 */
export async function insertResponse(
  db: Queryable,
  r: ResponseToStore,
  onConflict: 'fail' | 'ignore',
): Promise<void> {
  await db.query(
    `INSERT INTO idempotency_keys (user_id, key, request_method, request_path, request_hash, response_status, response_body)
     VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb) ${onConflict === 'ignore' ? 'ON CONFLICT DO NOTHING' : ''}`,
    [r.userId, r.key, r.method, r.path, r.requestHash, r.status, r.body],
  )
}

export async function deleteExpiredKeys(db: Queryable, limit: number): Promise<number> {
  const { rowCount } = await db.query(
    `DELETE FROM idempotency_keys WHERE ctid IN
       (SELECT ctid FROM idempotency_keys WHERE expires_at <= now() LIMIT $1)`,
    [limit],
  )
  return rowCount ?? 0
}
