import type { FastifyPluginAsyncJsonSchemaToTs } from '@fastify/type-provider-json-schema-to-ts'
import type { ServerResponse } from 'node:http'
import type { FastifyReply } from 'fastify'
import { NotFoundError, TooManyStreamsError } from '../errors.js'
import { orderSchema } from '../orders/order.schemas.js'
import { errorSchema, idempotencyKeyHeader } from '../schemas.js'
import type { Purchases } from './purchase.service.js'
import type { SaleEligibility } from './sale-eligibility.js'
import {
  holdingsSchema,
  purchaseBody,
  saleIdParams,
  saleIdsOf,
  saleIdsQuery,
  saleSchema,
} from './sale.schemas.js'
import { numbersOf, type SaleEvents, type SaleNumbers } from './sale-events.js'
import type { Sale } from './sale.js'
import type { Sales } from './sales.service.js'

const HEARTBEAT_MS = 15_000

interface SaleRoutesOptions {
  sales: Sales
  purchases: Purchases
  events: SaleEvents
  eligibility: SaleEligibility
}

const saleRoutes: FastifyPluginAsyncJsonSchemaToTs<{ Options: SaleRoutesOptions }> = async (app, opts) => {
  const { sales, purchases, events, eligibility } = opts
  const streams = new Set<ServerResponse>()
  // Open event streams would keep a stopping worker alive forever: end them when it starts to close.
  app.addHook('preClose', async () => {
    for (const stream of streams) stream.end()
  })

  app.get(
    '/api/sales',
    {
      schema: {
        tags: ['sales'],
        response: {
          200: {
            type: 'object',
            required: ['items'],
            additionalProperties: false,
            properties: { items: { type: 'array', items: saleSchema } },
          },
        },
      },
    },
    async () => ({ items: await sales.listSales() }),
  )

  app.get(
    '/api/sales/:id',
    { schema: { tags: ['sales'], params: saleIdParams, response: { 200: saleSchema, 404: errorSchema } } },
    async (request) => sales.getSale(request.params.id),
  )

  app.get(
    '/api/sales/:id/events',
    {
      schema: {
        tags: ['sales'],
        summary: 'Server-sent events: remaining, taken and status, a few times a second',
        params: saleIdParams,
        response: { 404: errorSchema, 503: errorSchema },
      },
    },
    async (request, reply) => {
      assertRoomForStream()
      streamSales(reply, [await sales.getSale(request.params.id)])
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
      streamSales(reply, known)
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

  // Each stream holds a socket and a listener for as long as the client likes: past the cap a worker
  // refuses new ones rather than slow down every other request it serves. A stream of several sales
  // counts once.
  function assertRoomForStream() {
    if (streams.size >= app.config.SSE_MAX_STREAMS_PER_WORKER) throw new TooManyStreamsError()
  }

  function streamSales(reply: FastifyReply, shown: Sale[]) {
    const stream = reply.raw
    reply.hijack()
    stream.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-cache',
      'x-accel-buffering': 'no',
    })
    const send = (numbers: SaleNumbers) => stream.write(`event: sale\ndata: ${JSON.stringify(numbers)}\n\n`)
    for (const sale of shown) send(numbersOf(sale))
    const unlisten = shown.map((sale) => events.listen(sale.id, send))
    const heartbeat = setInterval(() => stream.write(': heartbeat\n\n'), HEARTBEAT_MS)
    streams.add(stream)
    stream.on('close', () => {
      for (const stop of unlisten) stop()
      clearInterval(heartbeat)
      streams.delete(stream)
    })
  }

  app.post(
    '/api/sales/:id/purchase',
    {
      onRequest: app.authenticate,
      preHandler: [
        async (request) => eligibility.assertMayBuy(request.user, request.params.id),
        // Most of a stampede arrives after the last unit: a worker that knows the sale is sold out
        // answers at once, in one Redis round trip for a keyed request (none without a key).
        app.idempotent({
          earlyAnswer: (request) => purchases.answerFromMemory((request.params as { id: number }).id),
        }),
      ],
      schema: {
        tags: ['sales'],
        summary: 'Buy during a flash sale',
        description:
          '409 PER_USER_LIMIT: the buyer holds as many units as one customer may (reserved, paid, or cancelled); waiting does not help, so it is not a 429. 429 RATE_LIMITED: too many attempts; retry after Retry-After.',
        security: [{ bearer: [] }],
        params: saleIdParams,
        headers: idempotencyKeyHeader,
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
      },
    },
    async (request, reply) =>
      reply.status(201).send(
        await purchases.purchase({
          userId: request.user.sub,
          saleId: request.params.id,
          quantity: request.body.quantity,
          idempotency: request.idempotency,
        }),
      ),
  )
}

export default saleRoutes
