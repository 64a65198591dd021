import type { Queryable } from '../db/transaction.js'
import type { Role } from './token-claims.js'

export interface User {
  id: string
  email: string
  passwordHash: string | null
  role: Role
  isGuest: boolean
  /** Raised by a logout or a new password: tokens signed at a lower version no longer work. */
  tokenVersion: number
}

/** What a request may do, from the user's row: the API reads it rather than trust the token's claims. */
export type UserStanding = Pick<User, 'role' | 'isGuest' | 'tokenVersion'>

interface UserRow {
  id: string
  email: string
  password_hash: string | null
  role: Role
  is_guest: boolean
  token_version: number
}

const toUser = (row: UserRow): User => ({
  id: row.id,
  email: row.email,
  passwordHash: row.password_hash,
  role: row.role,
  isGuest: row.is_guest,
  tokenVersion: row.token_version,
})

export async function findUserById(db: Queryable, userId: string): Promise<User | undefined> {
  const { rows } = await db.query<UserRow>('SELECT * FROM users WHERE id = $1', [userId])
  return rows[0] && toUser(rows[0])
}

export async function findUserByEmail(db: Queryable, email: string): Promise<User | undefined> {
  const { rows } = await db.query<UserRow>('SELECT * FROM users WHERE email = $1', [email.toLowerCase()])
  return rows[0] && toUser(rows[0])
}

/** Inserts a user; resolves `undefined` when the email is taken (the UNIQUE constraint decides, not a read). */
export async function insertUserIfEmailFree(
  db: Queryable,
  user: { email: string; passwordHash: string | null; role: Role; isGuest: boolean },
): Promise<User | undefined> {
  const { rows } = await db.query<UserRow>(
    `INSERT INTO users (email, password_hash, role, is_guest) VALUES ($1, $2, $3, $4)
     ON CONFLICT (email) DO NOTHING RETURNING *`,
    [user.email.toLowerCase(), user.passwordHash, user.role, user.isGuest],
  )
  return rows[0] && toUser(rows[0])
}

/** Sets a user's password hash and role (the seed keeps the configured admin in step with its settings). */
export async function updateCredentials(
  db: Queryable,
  email: string,
  changes: { passwordHash?: string; role?: Role },
): Promise<void> {
  await db.query(
    `UPDATE users SET password_hash = COALESCE($2, password_hash), role = COALESCE($3, role),
            is_guest = is_guest AND $2::text IS NULL
      WHERE email = $1`,
    [email.toLowerCase(), changes.passwordHash ?? null, changes.role ?? null],
  )
}

/** Inserts `count` guest customers named <prefix>-<n>@<domain> in one statement; returns their ids. */
export async function insertGuests(
  db: Queryable,
  prefix: string,
  domain: string,
  count: number,
): Promise<string[]> {
  const { rows } = await db.query<{ id: string }>(
    `INSERT INTO users (email, role, is_guest)
     SELECT $1 || '-' || n || '@' || $2, 'customer', true FROM generate_series(1, $3) AS n
     RETURNING id`,
    [prefix, domain, count],
  )
  return rows.map((row) => row.id)
}

/** The standing of each of these users that exists. */
export async function userStandings(db: Queryable, userIds: string[]): Promise<Map<string, UserStanding>> {
  const { rows } = await db.query<Pick<UserRow, 'id' | 'role' | 'is_guest' | 'token_version'>>(
    'SELECT id, role, is_guest, token_version FROM users WHERE id = ANY($1::uuid[])',
    [userIds],
  )
  return new Map(
    rows.map((row) => [row.id, { role: row.role, isGuest: row.is_guest, tokenVersion: row.token_version }]),
  )
}

// Concurrency: both raise token_version relatively (token_version + 1), so two logouts at once both
// count, and each returns the version it produced: a token signed with it is newer than every token
// signed before either change.

/** Ends every session of the user: tokens signed before no longer match. The new version, or undefined for no user. */
export async function raiseTokenVersion(db: Queryable, userId: string): Promise<number | undefined> {
  const { rows } = await db.query<{ token_version: number }>(
    'UPDATE users SET token_version = token_version + 1 WHERE id = $1 RETURNING token_version',
    [userId],
  )
  return rows[0]?.token_version
}

/** Sets a new password hash and ends every session signed before it; the user as it is now. */
export async function replacePasswordAndRaiseTokenVersion(
  db: Queryable,
  userId: string,
  passwordHash: string,
): Promise<User | undefined> {
  const { rows } = await db.query<UserRow>(
    `UPDATE users SET password_hash = $2, token_version = token_version + 1
      WHERE id = $1 AND NOT is_guest RETURNING *`,
    [userId, passwordHash],
  )
  return rows[0] && toUser(rows[0])
}

/**
 * Deletes up to `limit` guest accounts made more than `olderThanHours` ago that never ordered (their
 * carts, allowances and Idempotency-Keys go with them); returns how many went.
 * Concurrency: SKIP LOCKED passes over a guest whose order is being inserted (the insert's foreign key
 * holds a lock on the user row), and two jobs processes delete disjoint batches.
 */
export async function deleteIdleGuests(
  db: Queryable,
  olderThanHours: number,
  limit: number,
): Promise<number> {
  const { rowCount } = await db.query(
    `DELETE FROM users WHERE id IN (
       SELECT u.id FROM users u
        WHERE u.is_guest AND u.created_at < now() - make_interval(hours => $1)
          AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.user_id = u.id)
        ORDER BY u.created_at LIMIT $2
          FOR UPDATE SKIP LOCKED)`,
    [olderThanHours, limit],
  )
  return rowCount ?? 0
}
