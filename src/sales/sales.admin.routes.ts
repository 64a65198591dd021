import type { FastifyInstance } from 'fastify'
import { errorSchema } from '../schemas.js'
import { auditSchema, newSaleBody, saleIdParams, saleSchema } from './sale.schemas.js'
import type { Sales } from './sales.service.js'

interface NewSaleBody {
  productId: number
  priceCents: number
  units: number
  perUserLimit: number
  registeredOnly: boolean
  startsAt: string
  endsAt: string
}

export default async function saleAdminRoutes(app: FastifyInstance, opts: { sales: Sales }) {
  const { sales } = opts
  app.addHook('onRequest', app.requireAdmin)

  app.post<{ Body: NewSaleBody }>(
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

  app.get<{ Params: { id: number } }>(
    '/api/admin/sales/:id/audit',
    {
      schema: {
        tags: ['admin'],
        summary: 'The invariant report of a sale',
        params: saleIdParams,
        response: { 200: auditSchema, 404: errorSchema },
      },
    },
    async (request) => sales.audit(request.params.id),
  )
}
