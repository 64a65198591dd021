import jwt from '@fastify/jwt'
import type { FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { jwtSecretOf, type Config } from '../config.js'
import { ForbiddenError, UnauthorizedError } from '../errors.js'
import { createKnownUsers } from './known-users.js'
import { hasClaimsShape, type TokenClaims } from './token-claims.js'
import { existingUserIds } from './users.repository.js'

declare module '@fastify/jwt' {
  interface FastifyJWT {
    payload: TokenClaims
    user: TokenClaims
  }
}

declare module 'fastify' {
  interface FastifyInstance {
    /** onRequest hook: 401 unless the request carries a valid Bearer token; sets `request.user`. */
    authenticate(request: FastifyRequest, reply: FastifyReply): Promise<void>
    /** onRequest hook: like `authenticate`, then 403 unless the user is an admin. */
    requireAdmin(request: FastifyRequest, reply: FastifyReply): Promise<void>
  }
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
      existing: (userIds) => existingUserIds(app.db.primary, userIds),
      ttlMs: opts.config.KNOWN_USER_TTL_SECONDS * 1000,
    })

    async function authenticate(request: FastifyRequest): Promise<void> {
      try {
        await request.jwtVerify()
      } catch {
        throw new UnauthorizedError()
      }
      if (!hasClaimsShape(request.user)) throw new UnauthorizedError()
      // A well-signed token of a deleted user (an expired guest) answers 401 like an expired token, so
      // the storefront starts over as a new guest; remembered per worker, so no query per request.
      if (!(await knownUsers.exists(request.user.sub))) {
        throw new UnauthorizedError('the account of this token no longer exists')
      }
    }

    app.decorate('authenticate', authenticate)
    app.decorate('requireAdmin', async (request: FastifyRequest) => {
      await authenticate(request)
      if (request.user.role !== 'admin') throw new ForbiddenError()
    })
  },
  { name: 'auth' },
)
