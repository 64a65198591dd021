import type { Queryable } from '../db/transaction.js'
import type { Role } from './token-claims.js'

export interface User {
  id: string
  email: string
  passwordHash: string | null
  role: Role
  isGuest: boolean
}

interface UserRow {
  id: string
  email: string
  password_hash: string | null
  role: Role
  is_guest: boolean
}

const toUser = (row: UserRow): User => ({
  id: row.id,
  email: row.email,
  passwordHash: row.password_hash,
  role: row.role,
  isGuest: row.is_guest,
})

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

/** Which of these user ids exist. */
export async function existingUserIds(db: Queryable, userIds: string[]): Promise<Set<string>> {
  const { rows } = await db.query<{ id: string }>('SELECT id FROM users WHERE id = ANY($1::uuid[])', [
    userIds,
  ])
  return new Set(rows.map((row) => row.id))
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
