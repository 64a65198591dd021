import type { FastifyPluginAsyncJsonSchemaToTs } from '@fastify/type-provider-json-schema-to-ts'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { NotFoundError, TooManyStreamsError } from '../errors.js'
import { createEventStreams } from '../http/sse.js'
import { errorSchema, idParams, listOf } from '../schemas.js'
import { holdingsSchema, saleIdsOf, saleIdsQuery, saleSchema } from './sale.schemas.js'
import { numbersOf, type QueueProgress, type SaleEvents, type SaleNumbers } from './sale-events.js'
import type { Sale } from './sale.js'
import type { Sales } from './sales.service.js'

const HEARTBEAT_MS = 15_000

interface SaleRoutesOptions {
  sales: Sales
  events: SaleEvents
}

const saleRoutes: FastifyPluginAsyncJsonSchemaToTs<{ Options: SaleRoutesOptions }> = async (app, opts) => {
  const { sales, events } = opts
  // A stream of several sales counts once against the cap.
  const streams = createEventStreams({
    maxStreams: app.config.SSE_MAX_STREAMS_PER_WORKER,
    heartbeatMs: HEARTBEAT_MS,
  })
  // Open event streams would keep a stopping worker alive forever: end them when it starts to close.
  app.addHook('preClose', async () => streams.closeAll())

  app.get(
    '/api/sales',
    {
      schema: {
        tags: ['sales'],
        response: { 200: listOf(saleSchema) },
      },
    },
    async () => ({ items: await sales.listSales() }),
  )

  app.get(
    '/api/sales/:id',
    { schema: { tags: ['sales'], params: idParams, response: { 200: saleSchema, 404: errorSchema } } },
    async (request) => sales.getSale(request.params.id),
  )

  app.get(
    '/api/sales/:id/events',
    {
      schema: {
        tags: ['sales'],
        summary:
          'Server-sent events: remaining, taken and status, a few times a second; for a sale with a waiting room, its progress too (event queue)',
        params: idParams,
        response: { 404: errorSchema, 503: errorSchema },
      },
    },
    async (request, reply) => {
      assertRoomForStream()
      streamSales(request, reply, [await sales.getSale(request.params.id)])
    },
  )

  // One stream for every sale a page shows: a browser allows six HTTP/1.1 connections per host, and a
  // stream per sale card would take them all with two tabs open, leaving none for the API calls.
  app.get(
    '/api/sales/events',
    {
      schema: {
        tags: ['sales'],
        summary: 'Server-sent events for several sales on one connection (same events, each with its saleId)',
        querystring: saleIdsQuery,
        response: { 400: errorSchema, 404: errorSchema, 503: errorSchema },
      },
    },
    async (request, reply) => {
      assertRoomForStream()
      const found = await Promise.all(
        saleIdsOf(request.query.ids).map((id) =>
          sales.getSale(id).catch((err: unknown) => {
            if (err instanceof NotFoundError) return undefined
            throw err
          }),
        ),
      )
      const known = found.filter((sale) => sale !== undefined)
      if (known.length === 0) throw new NotFoundError('sales')
      streamSales(request, reply, known)
    },
  )

  // The customer's own units per sale: kept out of the public sale list, which every shopper shares.
  app.get(
    '/api/sales/mine',
    {
      onRequest: app.authenticate,
      schema: {
        tags: ['sales'],
        summary:
          'Units that count toward the caller’s per-user limit (reserved, paid or cancelled) in each of the given sales',
        security: [{ bearer: [] }],
        querystring: saleIdsQuery,
        response: { 200: holdingsSchema, 400: errorSchema },
      },
    },
    async (request) => ({
      items: await sales.unitsHeldBy(request.user.sub, saleIdsOf(request.query.ids)),
    }),
  )

  function assertRoomForStream() {
    if (streams.full) throw new TooManyStreamsError()
  }

  function streamSales(request: FastifyRequest, reply: FastifyReply, shown: Sale[]) {
    reply.hijack()
    const unlisten: (() => void)[] = []
    const stream = streams.open(request.raw, reply.raw, () => unlisten.forEach((stop) => stop()))
    const send = (numbers: SaleNumbers) => stream.send('sale', JSON.stringify(numbers))
    const sendQueue = (progress: QueueProgress) => stream.send('queue', JSON.stringify(progress))
    for (const sale of shown) send(numbersOf(sale))
    unlisten.push(...shown.map((sale) => events.listen(sale.id, send)))
    // A sale with a waiting room also streams its progress (places admitted, sold out).
    for (const sale of shown) if (sale.queue) unlisten.push(events.listenQueue(sale.id, sendQueue))
  }
}

export default saleRoutes
