import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto'

// scrypt with N=16384, r=8, p=1 costs 16 MiB and tens of milliseconds per hash: cheap for one login, costly
// for a dictionary attack. The parameters are stored with the hash, so they can be raised later.
const COST = { N: 16384, r: 8, p: 1 }
const KEY_LENGTH = 32
const SALT_BYTES = 16
// A stored value is data: refuse parameters that would make verifying it eat memory (128 * N * r bytes).
const MAX_MEMORY = 64 * 1024 * 1024

/** Returns `scrypt$N$r$p$salt_b64$hash_b64` for a fresh random salt. */
export async function hashPassword(plain: string): Promise<string> {
  const salt = randomBytes(SALT_BYTES)
  const hash = await deriveKey(plain, salt, KEY_LENGTH, COST)
  return ['scrypt', COST.N, COST.r, COST.p, salt.toString('base64'), hash.toString('base64')].join('$')
}

/** True when `plain` matches; false for a wrong password, a guest (null) or a malformed stored value. */
export async function verifyPassword(plain: string, stored: string | null): Promise<boolean> {
  const [scheme, n, r, p, saltB64, hashB64, ...rest] = (stored ?? '').split('$')
  if (scheme !== 'scrypt' || rest.length > 0 || saltB64 === undefined || hashB64 === undefined) return false
  const cost = { N: Number(n), r: Number(r), p: Number(p) }
  const sane =
    [cost.N, cost.r, cost.p].every((v) => Number.isInteger(v) && v >= 1) &&
    (cost.N & (cost.N - 1)) === 0 && // scrypt wants a power of two
    128 * cost.N * cost.r <= MAX_MEMORY &&
    cost.p <= 16
  const salt = Buffer.from(saltB64, 'base64')
  const expected = Buffer.from(hashB64, 'base64')
  if (!sane || salt.length === 0 || expected.length < 16 || expected.length > 64) return false
  try {
    const actual = await deriveKey(plain, salt, expected.length, cost)
    // Constant-time comparison: how long it takes says nothing about how many bytes matched.
    return timingSafeEqual(actual, expected)
  } catch {
    return false
  }
}

function deriveKey(
  plain: string,
  salt: Buffer,
  length: number,
  cost: { N: number; r: number; p: number },
): Promise<Buffer> {
  // NFKC: the same password typed on two keyboards (composed or decomposed accents) hashes the same.
  const options = { ...cost, maxmem: MAX_MEMORY + 1024 * 1024 }
  return new Promise((resolve, reject) =>
    scrypt(plain.normalize('NFKC'), salt, length, options, (err, key) => (err ? reject(err) : resolve(key))),
  )
}
