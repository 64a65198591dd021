import type { FastifyPluginAsyncJsonSchemaToTs } from '@fastify/type-provider-json-schema-to-ts'

import { purchaseBody } from '../sales/sale.schemas.js'
import { errorSchema } from '../schemas.js'
import { checkReadiness } from './readiness.js'

const checksSchema = {
  type: 'object',
  additionalProperties: { type: 'string', enum: ['up', 'down'] },
} as const

// Where catalog reads go, and which dependencies run degraded (reads moved off the replica).
const readsSchema = {
  readsFrom: { type: 'string', enum: ['replica', 'primary'] },
  degraded: { type: 'array', items: { type: 'string' } },
} as const

const healthRoutes: FastifyPluginAsyncJsonSchemaToTs = async (app) => {
  app.get(
    '/health/live',
    {
      schema: {
        tags: ['health'],
        summary: 'The process is up and its event loop answers',
        response: { 200: { type: 'object', properties: { status: { type: 'string' } } } },
      },
    },
    async () => ({ status: 'ok' }),
  )

  // The benchmark's POST ceiling: what a purchase costs before it buys anything. The same nginx location
  // as purchases (limit_req, headers), the same token check and body validation, and no I/O after them,
  // so purchases are measured against the cost of an authenticated JSON POST on this machine.
  app.post(
    '/api/ceiling',
    {
      onRequest: app.authenticate,
      schema: {
        tags: ['health'],
        summary: 'An authenticated POST that does nothing: the yardstick purchases are measured against',
        security: [{ bearer: [] }],
        body: purchaseBody,
        response: {
          201: {
            type: 'object',
            required: ['userId', 'quantity'],
            properties: { userId: { type: 'string' }, quantity: { type: 'integer' } },
          },
        },
      },
    },
    async function answerPostCeiling(request, reply) {
      return reply.status(201).send({ userId: request.user.sub, quantity: request.body.quantity })
    },
  )

  app.get(
    '/health/ready',
    {
      schema: {
        tags: ['health'],
        summary:
          'Primary, replica and Redis all answer; 503 names the ones that do not; readsFrom tells where catalog reads go',
        response: {
          200: {
            type: 'object',
            properties: { status: { type: 'string' }, checks: checksSchema, ...readsSchema },
          },
          503: {
            ...errorSchema,
            properties: { ...errorSchema.properties, checks: checksSchema, ...readsSchema },
          },
        },
      },
    },
    async (_request, reply) => {
      const { checks, failing, readsFrom, degraded } = await checkReadiness(app)
      if (failing.length === 0) return { status: 'ready', checks, readsFrom, degraded }
      reply.errorCode = 'NOT_READY'
      return reply.status(503).send({
        code: 'NOT_READY',
        message: `not ready: ${failing.join(', ')}`,
        checks,
        readsFrom,
        degraded,
      })
    },
  )
}

export default healthRoutes
