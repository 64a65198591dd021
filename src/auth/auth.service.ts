import { randomUUID } from 'node:crypto'
import type { Db } from '../db/pool.js'
import { EmailTakenError, InvalidCredentialsError, NoPasswordError, UnauthorizedError } from '../errors.js'
import type { TokenClaims } from './token-claims.js'
import { hashPassword, verifyPassword } from './password.js'
import { assertAcceptablePassword } from './password-policy.js'
import {
  findUserByEmail,
  findUserById,
  insertUserIfEmailFree,
  raiseTokenVersion,
  replacePasswordAndRaiseTokenVersion,
  type User,
} from './users.repository.js'

export interface Session {
  token: string
  user: { id: string; email: string; role: string; isGuest: boolean }
}

// Verified against when the email is unknown, so a login takes as long for a stranger as for a user.
const DUMMY_HASH = hashPassword('not-a-real-password')

export function createAuth(deps: {
  db: Db
  signToken: (claims: TokenClaims) => string
  /** Every worker forgets what it remembers of the user (src/auth/user-changes.ts); after COMMIT. */
  userChanged: (userId: string) => Promise<void>
}) {
  const { db, signToken } = deps

  const sessionFor = (user: User): Session => ({
    token: signToken({ sub: user.id, role: user.role, guest: user.isGuest, ver: user.tokenVersion }),
    user: { id: user.id, email: user.email, role: user.role, isGuest: user.isGuest },
  })

  return {
    async register(email: string, password: string): Promise<Session> {
      assertAcceptablePassword(password, email)
      const user = await insertUserIfEmailFree(db.primary, {
        email,
        passwordHash: await hashPassword(password),
        role: 'customer',
        isGuest: false,
      })
      if (!user) throw new EmailTakenError()
      return sessionFor(user)
    },

    async login(email: string, password: string): Promise<Session> {
      const user = await findUserByEmail(db.primary, email)
      // Same answer, and the same scrypt cost, for an unknown email and a wrong password: the API does
      // not reveal who has an account.
      const valid = await verifyPassword(password, user ? user.passwordHash : await DUMMY_HASH)
      if (!user || !valid) throw new InvalidCredentialsError()
      return sessionFor(user)
    },

    /** An instant account for the demo storefront: no password, a real user row, a normal customer token. */
    async guest(): Promise<Session> {
      const user = await insertUserIfEmailFree(db.primary, {
        email: `guest-${randomUUID()}@guest.stampede.local`,
        passwordHash: null,
        role: 'customer',
        isGuest: true,
      })
      if (!user) throw new Error('a fresh guest email collided')
      return sessionFor(user)
    },

    /** Ends every session of the user, on every device: each token signed before this stops working. */
    async logout(userId: string): Promise<void> {
      await raiseTokenVersion(db.primary, userId)
      await deps.userChanged(userId)
    },

    /**
     * Sets a new password after checking the current one, and ends every session signed before it;
     * the answer is a fresh session, so the device that changed it stays logged in.
     */
    async changePassword(userId: string, currentPassword: string, newPassword: string): Promise<Session> {
      const user = await findUserById(db.primary, userId)
      if (!user) throw new UnauthorizedError('the account of this token no longer exists')
      if (user.isGuest) throw new NoPasswordError()
      if (!(await verifyPassword(currentPassword, user.passwordHash))) throw new InvalidCredentialsError()
      assertAcceptablePassword(newPassword, user.email)
      const changed = await replacePasswordAndRaiseTokenVersion(
        db.primary,
        userId,
        await hashPassword(newPassword),
      )
      if (!changed) throw new UnauthorizedError('the account of this token no longer exists')
      await deps.userChanged(userId)
      return sessionFor(changed)
    },
  }
}
