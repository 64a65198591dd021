import { randomUUID } from 'node:crypto'
import { createSigner } from 'fast-jwt'
import type pg from 'pg'
import { jwtSecretOf, type Config } from '../config.js'

export interface LoadTestUser {
  id: string
  token: string
}

/**
 * Creates `count` customers in one INSERT and signs a token for each with the app's own secret, so a
 * load test can act as thousands of distinct buyers without logging in thousands of times. The users
 * are guests (no password) named load-<run>-<n>@load.stampede.local.
 */
export async function createLoadTestUsers(
  pool: pg.Pool,
  config: Config,
  count: number,
): Promise<LoadTestUser[]> {
  const run = randomUUID().slice(0, 8)
  const { rows } = await pool.query<{ id: string }>(
    `INSERT INTO users (email, role, is_guest)
     SELECT 'load-' || $1 || '-' || n || '@load.stampede.local', 'customer', true FROM generate_series(1, $2) AS n
     RETURNING id`,
    [run, count],
  )
  const sign = createSigner({ key: jwtSecretOf(config), expiresIn: config.JWT_TTL_SECONDS * 1000 })
  return rows.map(({ id }) => ({ id, token: sign({ sub: id, role: 'customer', guest: true }) }))
}
