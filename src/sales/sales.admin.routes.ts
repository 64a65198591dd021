import type { FastifyPluginAsyncJsonSchemaToTs } from '@fastify/type-provider-json-schema-to-ts'

import { errorSchema, idParams } from '../schemas.js'
import { auditSchema, newSaleBody, saleSchema } from './sale.schemas.js'
import type { Sales } from './sales.service.js'

const saleAdminRoutes: FastifyPluginAsyncJsonSchemaToTs<{ Options: { sales: Sales } }> = async (
  app,
  { sales },
) => {
  app.addHook('onRequest', app.requireAdmin)

  app.post(
    '/api/admin/sales',
    {
      schema: {
        tags: ['admin'],
        summary: 'Create a flash sale: its units are taken from the product stock',
        body: newSaleBody,
        response: { 201: saleSchema, 400: errorSchema, 404: errorSchema, 409: errorSchema },
      },
    },
    async (request, reply) => {
      const { startsAt, endsAt, ...rest } = request.body
      const sale = await sales.createSale({ ...rest, startsAt: new Date(startsAt), endsAt: new Date(endsAt) })
      return reply.status(201).send(sale)
    },
  )

  app.get(
    '/api/admin/sales/:id/audit',
    {
      schema: {
        tags: ['admin'],
        summary: 'The invariant report of a sale',
        params: idParams,
        response: { 200: auditSchema, 404: errorSchema },
      },
    },
    async (request) => sales.audit(request.params.id),
  )
}

export default saleAdminRoutes
