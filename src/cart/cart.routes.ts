import type { FastifyPluginAsyncJsonSchemaToTs } from '@fastify/type-provider-json-schema-to-ts'
import type { FastifyReply } from 'fastify'
import { errorSchema, lineItemProperties, rowId } from '../schemas.js'
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
  properties: { productId: rowId },
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

const secured = { tags: ['cart'], security: [{ bearer: [] }] } as const
// Both item writes name the product in the path and carry If-Match.
const itemWrite = {
  ...secured,
  params: cartItemParams,
  headers: ifMatchHeader,
  response: writeAnswers,
} as const

const withEtag = (reply: FastifyReply, cart: Cart) => reply.header('etag', etagOf(cart)).send(cart)

const cartRoutes: FastifyPluginAsyncJsonSchemaToTs<{ Options: { cart: CartService } }> = async (
  app,
  { cart },
) => {
  app.addHook('onRequest', app.authenticate)

  app.get('/api/cart', { schema: { ...secured, response: { 200: cartSchema } } }, async (request, reply) =>
    withEtag(reply, await cart.getCart(request.user.sub)),
  )

  app.put(
    '/api/cart/items/:productId',
    { schema: { ...itemWrite, body: quantityBody } },
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

  app.delete('/api/cart/items/:productId', { schema: itemWrite }, async (request, reply) =>
    withEtag(
      reply,
      await cart.removeItem(request.user.sub, request.params.productId, request.headers['if-match']),
    ),
  )
}

export default cartRoutes
