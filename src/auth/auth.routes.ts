import type { FastifyPluginAsyncJsonSchemaToTs } from '@fastify/type-provider-json-schema-to-ts'
import type { FastifyRequest } from 'fastify'
import { createRateLimiter } from '../rate-limit/rate-limiter.js'
import { errorSchema } from '../schemas.js'
import { noStore } from './auth.plugin.js'
import { createAuth } from './auth.service.js'

const credentials = {
  type: 'object',
  required: ['email', 'password'],
  additionalProperties: false,
  properties: {
    email: { type: 'string', format: 'email', maxLength: 254 },
    password: { type: 'string', minLength: 8, maxLength: 200 },
  },
} as const

const passwordChange = {
  type: 'object',
  required: ['currentPassword', 'newPassword'],
  additionalProperties: false,
  properties: {
    currentPassword: { type: 'string', minLength: 1, maxLength: 200 },
    newPassword: { type: 'string', minLength: 8, maxLength: 200 },
  },
} as const

const session = {
  type: 'object',
  required: ['token', 'user'],
  additionalProperties: false,
  properties: {
    token: { type: 'string' },
    user: {
      type: 'object',
      required: ['id', 'email', 'role', 'isGuest'],
      additionalProperties: false,
      properties: {
        id: { type: 'string' },
        email: { type: 'string' },
        role: { type: 'string' },
        isGuest: { type: 'boolean' },
      },
    },
  },
} as const

const authRoutes: FastifyPluginAsyncJsonSchemaToTs = async (app) => {
  const auth = createAuth({
    db: app.db,
    signToken: (claims) => app.jwt.sign(claims),
    userChanged: app.userChanged,
  })
  // Every answer here carries a token, or ends one.
  app.addHook('onRequest', noStore)
  // Accounts are free, so a per-customer limit is only as strong as the cost of another account: each
  // client address may create RATE_LIMIT_SIGNUP_PER_MINUTE of them (registrations and guests together),
  // counted in Redis for every worker, before any body is parsed or any password hashed.
  const signups = createRateLimiter(app.redis, 60_000)
  const limitSignups = (request: FastifyRequest) =>
    signups.check([{ scope: `signup:${request.ip}`, perWindow: app.config.RATE_LIMIT_SIGNUP_PER_MINUTE }])

  app.post(
    '/api/auth/register',
    {
      onRequest: limitSignups,
      schema: {
        tags: ['auth'],
        body: credentials,
        description: `The password follows NIST SP 800-63B: at least 8 characters (runs of spaces count as one), not a common password, not the email: otherwise 422 WEAK_PASSWORD.`,
        response: { 201: session, 409: errorSchema, 422: errorSchema, 429: errorSchema },
      },
    },
    async (request, reply) =>
      reply.status(201).send(await auth.register(request.body.email, request.body.password)),
  )

  app.post(
    '/api/auth/login',
    { schema: { tags: ['auth'], body: credentials, response: { 200: session, 401: errorSchema } } },
    async (request) => auth.login(request.body.email, request.body.password),
  )

  app.post(
    '/api/auth/guest',
    { onRequest: limitSignups, schema: { tags: ['auth'], response: { 201: session, 429: errorSchema } } },
    async (_request, reply) => reply.status(201).send(await auth.guest()),
  )

  app.post(
    '/api/auth/logout',
    {
      onRequest: app.authenticate,
      schema: {
        tags: ['auth'],
        summary: 'End every session of this account: each token signed before stops working',
        security: [{ bearer: [] }],
        response: { 204: { type: 'null' }, 401: errorSchema },
      },
    },
    async (request, reply) => auth.logout(request.user.sub).then(() => reply.status(204).send(null)),
  )

  app.post(
    '/api/auth/password',
    {
      onRequest: app.authenticate,
      schema: {
        tags: ['auth'],
        summary: 'Change the password: every other session ends; the answer is a new session',
        security: [{ bearer: [] }],
        body: passwordChange,
        response: { 200: session, 401: errorSchema, 409: errorSchema, 422: errorSchema },
      },
    },
    async (request) =>
      auth.changePassword(request.user.sub, request.body.currentPassword, request.body.newPassword),
  )
}

export default authRoutes
