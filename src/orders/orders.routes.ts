import type { FastifyPluginAsyncJsonSchemaToTs } from '@fastify/type-provider-json-schema-to-ts'
import type { FastifyRequest } from 'fastify'
import { errorSchema, idempotencyKeyHeader, listOf } from '../schemas.js'
import { orderIdParams, orderSchema } from './order.schemas.js'
import type { Caller, Orders } from './orders.service.js'

const callerOf = (request: FastifyRequest): Caller => ({
  userId: request.user.sub,
  isAdmin: request.user.role === 'admin',
})

const secured = { security: [{ bearer: [] }], tags: ['orders'] }
const orderAnswers = { 200: orderSchema, 404: errorSchema, 409: errorSchema } as const

const orderRoutes: FastifyPluginAsyncJsonSchemaToTs<{ Options: { orders: Orders } }> = async (
  app,
  { orders },
) => {
  app.addHook('onRequest', app.authenticate)

  app.post(
    '/api/checkout',
    {
      preHandler: app.idempotent(),
      schema: {
        ...secured,
        summary: 'Turn the cart into a reserved order',
        headers: idempotencyKeyHeader,
        response: { 201: orderSchema, 409: errorSchema, 422: errorSchema, 503: errorSchema },
      },
    },
    async (request, reply) =>
      reply.status(201).send(await orders.checkout(request.user.sub, request.idempotency)),
  )

  app.get(
    '/api/orders',
    {
      schema: {
        ...secured,
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: { limit: { type: 'integer', minimum: 1, maximum: 100, default: 50 } },
        },
        response: { 200: listOf(orderSchema) },
      },
    },
    async (request) => ({ items: await orders.list(callerOf(request), request.query.limit) }),
  )

  app.get(
    '/api/orders/:id',
    { schema: { ...secured, params: orderIdParams, response: orderAnswers } },
    async (request) => orders.get(callerOf(request), request.params.id),
  )

  app.post(
    '/api/orders/:id/pay',
    {
      preHandler: app.idempotent(),
      schema: {
        ...secured,
        summary: 'Pay a reserved order (simulated provider)',
        params: orderIdParams,
        headers: idempotencyKeyHeader,
        response: { ...orderAnswers, 402: errorSchema, 422: errorSchema, 503: errorSchema },
      },
    },
    async (request) => orders.pay(callerOf(request), request.params.id, request.idempotency),
  )

  app.post(
    '/api/orders/:id/cancel',
    {
      schema: {
        ...secured,
        summary: 'Cancel a reserved order and release its stock',
        params: orderIdParams,
        response: orderAnswers,
      },
    },
    async (request) => orders.cancel(callerOf(request), request.params.id),
  )
}

export default orderRoutes
