import type { FastifyPluginAsyncJsonSchemaToTs } from '@fastify/type-provider-json-schema-to-ts'

import { errorSchema } from '../schemas.js'
import type { Catalog } from './catalog.service.js'
import { categorySchema, productIdParams, productSchema, productSearchQuery } from './product.schemas.js'

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
    {
      schema: {
        tags: ['catalog'],
        response: {
          200: {
            type: 'object',
            required: ['items'],
            additionalProperties: false,
            properties: { items: { type: 'array', items: categorySchema } },
          },
        },
      },
    },
    async () => ({ items: await catalog.listCategories() }),
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
