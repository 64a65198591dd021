import type { FastifyPluginAsyncJsonSchemaToTs } from '@fastify/type-provider-json-schema-to-ts'

import { errorSchema, idParams } from '../schemas.js'
import type { Catalog } from './catalog.service.js'
import {
  newProductBody,
  priceBody,
  productChangesBody,
  productSchema,
  restockBody,
} from './product.schemas.js'

const answers = { 200: productSchema, 404: errorSchema } as const

const productAdminRoutes: FastifyPluginAsyncJsonSchemaToTs<{ Options: { catalog: Catalog } }> = async (
  app,
  { catalog },
) => {
  app.addHook('onRequest', app.requireAdmin)

  app.post(
    '/api/admin/products',
    { schema: { tags: ['admin'], body: newProductBody, response: { 201: productSchema, 409: errorSchema } } },
    async (request, reply) => reply.status(201).send(await catalog.createProduct(request.body)),
  )

  app.patch(
    '/api/admin/products/:id',
    { schema: { tags: ['admin'], params: idParams, body: productChangesBody, response: answers } },
    async (request) => catalog.updateProduct(request.params.id, request.body),
  )

  app.put(
    '/api/admin/products/:id/price',
    { schema: { tags: ['admin'], params: idParams, body: priceBody, response: answers } },
    async (request) => catalog.updateProduct(request.params.id, { priceCents: request.body.priceCents }),
  )

  app.post(
    '/api/admin/products/:id/restock',
    {
      schema: {
        tags: ['admin'],
        params: idParams,
        body: restockBody,
        response: { ...answers, 422: errorSchema },
      },
    },
    async (request) => catalog.restock(request.params.id, request.body.quantity),
  )
}

export default productAdminRoutes
