import jwt from '@fastify/jwt'
import type { FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { jwtSecretOf, type Config } from '../config.js'
import { ForbiddenError, UnauthorizedError } from '../errors.js'
import { duplicateForSubscribing } from '../redis/client.js'
import { createKnownUsers } from './known-users.js'
import { hasClaimsShape, tokenVersionOf, type TokenClaims } from './token-claims.js'
import { createUserChanges } from './user-changes.js'
import { userStandings } from './users.repository.js'

declare module '@fastify/jwt' {
  interface FastifyJWT {
    payload: TokenClaims
    user: TokenClaims
  }
}

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * onRequest hook: 401 unless the request carries a valid Bearer token of a session that has not
     * ended; sets `request.user`, whose role and guest flag come from the user's row. Marks the answer
     * `Cache-Control: no-store`: it carries the user's own data.
     */
    authenticate(request: FastifyRequest, reply: FastifyReply): Promise<void>
    /** onRequest hook: like `authenticate`, then 403 unless the user is an admin. */
    requireAdmin(request: FastifyRequest, reply: FastifyReply): Promise<void>
    /** After a user's row changed (logout, password, role): every worker forgets what it knew of the user. */
    userChanged(userId: string): Promise<void>
  }
}

/**
 * Set by nginx on every request it passes on: `public` from the public server, `admin` from the
 * loopback admin server (nginx.conf). A client's own value never gets through: nginx replaces it.
 */
export const EDGE_HEADER = 'x-stampede-edge'

/** Answers that carry a token or a user's own data are never stored by a browser or a proxy. */
export async function noStore(_request: FastifyRequest, reply: FastifyReply): Promise<void> {
  reply.header('cache-control', 'no-store')
}

// Route files add these as onRequest hooks: authentication runs before the body is even parsed, so an
// unauthenticated caller costs no parsing and learns nothing about the schemas from a 400.
export default fp(
  async (app, opts: { config: Config }) => {
    await app.register(jwt, {
      secret: jwtSecretOf(opts.config),
      sign: { expiresIn: opts.config.JWT_TTL_SECONDS },
      // A buyer in a stampede sends the same token many times: verified tokens are remembered (until
      // they expire), so the HMAC runs once per token instead of once per request.
      verify: { cache: 10_000, errorCacheTTL: 600_000 },
    })

    const knownUsers = createKnownUsers({
      standingsOf: (userIds) => userStandings(app.db.primary, userIds),
      ttlMs: opts.config.KNOWN_USER_TTL_SECONDS * 1000,
    })
    const changes = createUserChanges({
      publisher: app.redis,
      subscriber: duplicateForSubscribing(app.redis),
      forget: knownUsers.forget,
      forgetAll: knownUsers.forgetAll,
      log: app.log,
    })
    await changes.start()
    app.addHook('onClose', async () => changes.close())

    async function authenticate(request: FastifyRequest, reply: FastifyReply): Promise<void> {
      await noStore(request, reply)
      try {
        await request.jwtVerify()
      } catch {
        throw new UnauthorizedError()
      }
      const claims = request.user
      if (!hasClaimsShape(claims)) throw new UnauthorizedError()
      // The token says who; the user's row says what they may do. A well-signed token of a deleted user
      // (an expired guest) answers 401 like an expired token, so the storefront starts over as a new
      // guest; a token signed before a logout or a password change answers 401 too. Remembered per
      // worker, so no query per request; `undefined` (the row could not be read) falls back on the claims.
      const standing = await knownUsers.standing(claims.sub)
      if (standing === null) throw new UnauthorizedError('the account of this token no longer exists')
      if (standing && tokenVersionOf(claims) !== standing.tokenVersion)
        throw new UnauthorizedError('this session has ended (logout or new password): log in again')
      const role = standing?.role ?? claims.role
      // The public server never grants admin rights: an admin's token there is a customer's.
      const publicEdge = request.headers[EDGE_HEADER] === 'public'
      // A new object: the verified-token cache may hand the same claims object to the next request.
      request.user = {
        ...claims,
        role: publicEdge ? 'customer' : role,
        guest: standing?.isGuest ?? claims.guest,
      }
    }

    app.decorate('authenticate', authenticate)
    app.decorate('requireAdmin', async (request: FastifyRequest, reply: FastifyReply) => {
      await authenticate(request, reply)
      if (request.user.role !== 'admin') throw new ForbiddenError()
    })
    app.decorate('userChanged', changes.announce)
  },
  { name: 'auth', dependencies: ['postgres', 'redis'] },
)
