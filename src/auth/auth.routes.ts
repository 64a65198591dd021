import type { FastifyInstance } from 'fastify'
import { errorSchema } from '../schemas.js'
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

const session = {
  type: 'object',
  required: ['token', 'user'],
  properties: {
    token: { type: 'string' },
    user: {
      type: 'object',
      properties: {
        id: { type: 'string' },
        email: { type: 'string' },
        role: { type: 'string' },
        isGuest: { type: 'boolean' },
      },
    },
  },
} as const

interface Credentials {
  email: string
  password: string
}

export default async function authRoutes(app: FastifyInstance) {
  const auth = createAuth({ db: app.db, signToken: (claims) => app.jwt.sign(claims) })

  app.post<{ Body: Credentials }>(
    '/api/auth/register',
    { schema: { tags: ['auth'], body: credentials, response: { 201: session, 409: errorSchema } } },
    async (request, reply) =>
      reply.status(201).send(await auth.register(request.body.email, request.body.password)),
  )

  app.post<{ Body: Credentials }>(
    '/api/auth/login',
    { schema: { tags: ['auth'], body: credentials, response: { 200: session, 401: errorSchema } } },
    async (request) => auth.login(request.body.email, request.body.password),
  )

  app.post(
    '/api/auth/guest',
    { schema: { tags: ['auth'], response: { 201: session } } },
    async (_request, reply) => reply.status(201).send(await auth.guest()),
  )
}
