import type { JsonSchemaToTsProvider } from '@fastify/type-provider-json-schema-to-ts'
import type { FastifyInstance, FastifyReply } from 'fastify'
import { errorSchema, lineItemProperties } from '../schemas.js'
import type { Cart } from './cart.repository.js'
import { etagOf, type CartService } from './cart.service.js'

const cartSchema = {
  type: 'object',
  required: ['version', 'items', 'totalCents'],
  additionalProperties: false,
  properties: {
    version: { type: 'integer' },
    totalCents: { type: 'integer' },
    items: {
      type: 'array',
      items: {
        type: 'object',
        required: ['productId', 'name', 'quantity', 'unitPriceCents', 'lineTotalCents'],
        additionalProperties: false,
        properties: { ...lineItemProperties, name: { type: 'string' }, lineTotalCents: { type: 'integer' } },
      },
    },
  },
} as const

const cartItemParams = {
  type: 'object',
  required: ['productId'],
  additionalProperties: false,
  properties: { productId: { type: 'integer', minimum: 1, maximum: 2147483647 } },
} as const

const ifMatchHeader = {
  type: 'object',
  properties: { 'if-match': { type: 'string', description: 'the ETag of the cart you last read' } },
} as const

const writeAnswers = { 200: cartSchema, 404: errorSchema, 412: errorSchema, 428: errorSchema } as const

const quantityBody = {
  type: 'object',
  required: ['quantity'],
  additionalProperties: false,
  properties: { quantity: { type: 'integer', minimum: 1, maximum: 100 } },
} as const

const withEtag = (reply: FastifyReply, cart: Cart) => reply.header('etag', etagOf(cart)).send(cart)

export default async function cartRoutes(fastify: FastifyInstance, opts: { cart: CartService }) {
  const app = fastify.withTypeProvider<JsonSchemaToTsProvider>()
  const { cart } = opts
  app.addHook('onRequest', app.authenticate)

  app.get(
    '/api/cart',
    { schema: { tags: ['cart'], security: [{ bearer: [] }], response: { 200: cartSchema } } },
    async (request, reply) => withEtag(reply, await cart.getCart(request.user.sub)),
  )

  app.put(
    '/api/cart/items/:productId',
    {
      schema: {
        tags: ['cart'],
        security: [{ bearer: [] }],
        params: cartItemParams,
        headers: ifMatchHeader,
        body: quantityBody,
        response: writeAnswers,
      },
    },
    async (request, reply) =>
      withEtag(
        reply,
        await cart.setItem(
          request.user.sub,
          request.params.productId,
          request.body.quantity,
          request.headers['if-match'],
        ),
      ),
  )

  app.delete(
    '/api/cart/items/:productId',
    {
      schema: {
        tags: ['cart'],
        security: [{ bearer: [] }],
        params: cartItemParams,
        headers: ifMatchHeader,
        response: writeAnswers,
      },
    },
    async (request, reply) =>
      withEtag(
        reply,
        await cart.removeItem(request.user.sub, request.params.productId, request.headers['if-match']),
      ),
  )
}
