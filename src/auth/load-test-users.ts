import { randomUUID } from 'node:crypto'
import { createSigner } from 'fast-jwt'
import type pg from 'pg'
import { jwtSecretOf, type Config } from '../config.js'
import { insertGuests } from './users.repository.js'

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
  const ids = await insertGuests(pool, `load-${run}`, 'load.stampede.local', count)
  const sign = createSigner({ key: jwtSecretOf(config), expiresIn: config.JWT_TTL_SECONDS * 1000 })
  return ids.map((id) => ({ id, token: sign({ sub: id, role: 'customer', guest: true }) }))
}
