import type { FastifyPluginAsyncJsonSchemaToTs } from '@fastify/type-provider-json-schema-to-ts'

import { errorSchema, idParams, listOf } from '../schemas.js'
import type { Catalog } from './catalog.service.js'
import { categorySchema, productSchema, productSearchQuery } from './product.schemas.js'

const pageSchema = {
  type: 'object',
  required: ['items', 'nextCursor'],
  additionalProperties: false,
  properties: { items: { type: 'array', items: productSchema }, nextCursor: { type: ['string', 'null'] } },
} as const

/** Each cached product's answer, serialised once (the entry goes with the object). */
const productJson = new WeakMap<object, string>()

function jsonOnce(product: object, serialize: (product: object) => string): string {
  let json = productJson.get(product)
  if (json === undefined) {
    json = serialize(product)
    productJson.set(product, json)
  }
  return json
}

const productRoutes: FastifyPluginAsyncJsonSchemaToTs<{ Options: { catalog: Catalog } }> = async (
  app,
  { catalog },
) => {
  app.get(
    '/api/products',
    {
      schema: {
        tags: ['catalog'],
        summary: 'A page of the catalogue, optionally only what matches `q` and/or `category`',
        querystring: productSearchQuery,
        response: { 200: pageSchema, 400: errorSchema },
      },
    },
    async (request) => {
      const { q, category, cursor, limit } = request.query
      return catalog.searchProducts({ q, category }, cursor, limit)
    },
  )

  app.get(
    '/api/categories',
    { schema: { tags: ['catalog'], response: { 200: listOf(categorySchema) } } },
    async () => ({ items: await catalog.listCategories() }),
  )

  app.get(
    '/api/products/:id',
    {
      schema: {
        tags: ['catalog'],
        params: idParams,
        response: { 200: productSchema, 404: errorSchema },
      },
    },
    async function getProduct(request, reply) {
      const product = await catalog.getProduct(request.params.id)
      // A cached product is the same object until its entry changes: its JSON is made once and its
      // bytes sent as they are, not serialised again for every reader.
      const json = jsonOnce(product, (p) => reply.serialize(p) as string)
      return reply.serializer(() => json).send(product)
    },
  )
}

export default productRoutes
