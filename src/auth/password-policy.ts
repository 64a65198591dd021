import { WeakPasswordError } from '../errors.js'
import { COMMON_PASSWORDS } from './common-passwords.js'

// The password rules of NIST SP 800-63B (memorized secrets): at least 8 characters, any characters at
// all (spaces and emoji included) up to the schema's 200, and no composition rules (no "one digit, one
// symbol"): they make passwords harder to remember, not to guess. What is refused is what an attacker
// tries first: a password from a list of common ones, one character repeated or a run like 12345678,
// and words of the context (the account's own email or its name part, the service's name).

export const MIN_PASSWORD_LENGTH = 8
const SERVICE_NAME = 'stampede'

/**
 * The password as it is judged: Unicode normalized (NFKC, as the standard asks, so one character typed
 * two ways counts once) and runs of spaces collapsed to one, ends trimmed: eight spaces are one space.
 */
const judged = (password: string) => password.normalize('NFKC').replace(/\s+/g, ' ').trim()

/** Throws WeakPasswordError naming the first rule the password breaks. */
export function assertAcceptablePassword(password: string, email: string): void {
  const text = judged(password)
  const characters = [...text]
  if (characters.length < MIN_PASSWORD_LENGTH)
    throw new WeakPasswordError(
      `a password needs at least ${MIN_PASSWORD_LENGTH} characters (runs of spaces count as one)`,
    )
  const lower = text.toLowerCase()
  if (COMMON_PASSWORDS.has(lower) || COMMON_PASSWORDS.has(lower.replace(/[\d\W_]+$/u, '')))
    throw new WeakPasswordError('this password is on a list of the most common passwords: choose another')
  if (isRepeatedOrSequential(characters))
    throw new WeakPasswordError('a password may not be one character repeated or a run like 12345678')
  const address = email.toLowerCase()
  const name = address.split('@')[0] ?? address
  const stem = lower.replace(/[\d\W_]+$/u, '')
  if (lower.includes(address) || [address, name, SERVICE_NAME].includes(stem))
    throw new WeakPasswordError(
      'a password may not be the email address, its name part or the name of the shop',
    )
}

/** One character repeated (aaaaaaaa), or each character one step from the last (12345678, hgfedcba). */
function isRepeatedOrSequential(characters: string[]): boolean {
  const codes = characters.map((c) => c.codePointAt(0)!)
  const steps = new Set(codes.slice(1).map((code, i) => code - codes[i]!))
  return steps.size === 1 && [0, 1, -1].includes([...steps][0]!)
}
