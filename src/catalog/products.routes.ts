import type { FastifyPluginAsyncJsonSchemaToTs } from '@fastify/type-provider-json-schema-to-ts'

import { errorSchema } from '../schemas.js'
import type { Catalog } from './catalog.service.js'
import { pageQuery, productIdParams, productSchema } from './product.schemas.js'

const pageSchema = {
  type: 'object',
  required: ['items', 'nextCursor'],
  additionalProperties: false,
  properties: { items: { type: 'array', items: productSchema }, nextCursor: { type: ['string', 'null'] } },
} as const

const productRoutes: FastifyPluginAsyncJsonSchemaToTs<{ Options: { catalog: Catalog } }> = async (
  app,
  { catalog },
) => {
  app.get(
    '/api/products',
    {
      schema: { tags: ['catalog'], querystring: pageQuery, response: { 200: pageSchema, 400: errorSchema } },
    },
    async (request) => catalog.listProducts(request.query.cursor, request.query.limit),
  )

  app.get(
    '/api/products/:id',
    {
      schema: {
        tags: ['catalog'],
        params: productIdParams,
        response: { 200: productSchema, 404: errorSchema },
      },
    },
    async (request) => catalog.getProduct(request.params.id),
  )
}

export default productRoutes
