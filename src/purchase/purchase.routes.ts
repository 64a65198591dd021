import type { JsonSchemaToTsProvider } from '@fastify/type-provider-json-schema-to-ts'
import type {
  FastifyInstance,
  FastifyReply,
  FastifyRequest,
  RawServerDefault,
  RouteGenericInterface,
} from 'fastify'
import type { IncomingMessage } from 'node:http'
import { replay } from '../idempotency/idempotency.plugin.js'
import { orderSchema } from '../orders/order.schemas.js'
import { purchaseBody } from '../sales/sale.schemas.js'
import { errorSchema, idempotencyKeyHeader, idParams } from '../schemas.js'
import type { Purchases } from './purchase.js'

const purchaseSchema = {
  tags: ['sales'],
  summary: 'Buy during a flash sale',
  description:
    '409 PER_USER_LIMIT: the buyer holds as many units as one customer may (reserved, paid, or cancelled); waiting does not help, so it is not a 429. 429 RATE_LIMITED: too many attempts; retry after Retry-After.',
  security: [{ bearer: [] }],
  params: idParams,
  headers: {
    ...idempotencyKeyHeader,
    properties: {
      ...idempotencyKeyHeader.properties,
      'waiting-room-admission': {
        type: 'string',
        description:
          "for a sale with a waiting room: the admission GET /api/sales/:id/queue gives when it is the buyer's turn",
      },
    },
  },
  body: purchaseBody,
  response: {
    201: orderSchema,
    403: errorSchema,
    404: errorSchema,
    409: errorSchema,
    422: errorSchema,
    429: errorSchema,
    503: errorSchema,
  },
} as const

/** The purchase request as the schema types it (params, headers and body). */
type PurchaseRequest = FastifyRequest<
  RouteGenericInterface,
  RawServerDefault,
  IncomingMessage,
  typeof purchaseSchema,
  JsonSchemaToTsProvider
>

/** The flash-sale purchase: one endpoint, one line into the use case (./purchase.ts). */
export default async function purchaseRoutes(app: FastifyInstance, opts: { purchases: Purchases }) {
  // Authentication runs in onRequest, before the body is parsed; everything else is the use case's.
  app.post(
    '/api/sales/:id/purchase',
    { onRequest: app.authenticate, schema: purchaseSchema },
    (request: PurchaseRequest, reply) => purchase(opts.purchases, request, reply),
  )
}

/** POST /api/sales/:id/purchase: 201 with the reserved order, or the answer the key already holds. */
export async function purchase(purchases: Purchases, request: PurchaseRequest, reply: FastifyReply) {
  const answer = await purchases.purchase(
    request.user,
    request.params.id,
    request.body.quantity,
    request.server.idempotencyKeyOf(request),
    request.headers['waiting-room-admission'],
  )
  if ('replay' in answer) return replay(reply, answer.replay)
  return reply.status(201).send(answer.order)
}
