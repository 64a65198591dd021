import { randomUUID } from 'node:crypto'
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import authPlugin from './auth/auth.plugin.js'
import authRoutes from './auth/auth.routes.js'
import cartRoutes from './cart/cart.routes.js'
import { createCart } from './cart/cart.service.js'
import { createCatalog } from './catalog/catalog.service.js'
import productAdminRoutes from './catalog/products.admin.routes.js'
import productRoutes from './catalog/products.routes.js'
import type { Config } from './config.js'
import healthRoutes from './health/health.routes.js'
import idempotency from './idempotency/idempotency.plugin.js'
import orderRoutes from './orders/orders.routes.js'
import { createOrders } from './orders/orders.service.js'
import { createSimulatedPaymentProvider } from './orders/payment-provider.js'
import cache from './plugins/cache.plugin.js'
import drain from './plugins/drain.plugin.js'
import errorHandler, { answerClientError, answerFrameworkError } from './plugins/error-handler.plugin.js'
import metrics from './plugins/metrics.plugin.js'
import openapi from './plugins/openapi.plugin.js'
import postgres from './plugins/postgres.plugin.js'
import redis from './plugins/redis.plugin.js'
import validation from './plugins/validation.plugin.js'
import { createPurchaseWiring, createWaitingRoomWiring } from './purchase-wiring.js'
import { createRateLimiter } from './rate-limit/rate-limiter.js'
import { duplicateForSubscribing } from './redis/client.js'
import { createPurchases } from './purchase/purchase.js'
import purchaseRoutes from './purchase/purchase.routes.js'
import { createSaleTerms } from './purchase/purchase-path.js'
import { createJoinProofs } from './purchase/queue/join-proof.js'
import { createQueueEntry } from './purchase/queue/queue.js'
import queueRoutes from './purchase/queue/queue.routes.js'
import { createSaleEvents, numbersOf } from './sales/sale-events.js'
import saleAdminRoutes from './sales/sales.admin.routes.js'
import saleRoutes from './sales/sales.routes.js'
import { findQueueTerms } from './sales/sales.repository.js'
import { createSales } from './sales/sales.service.js'

declare module 'fastify' {
  interface FastifyInstance {
    config: Config
  }
}

/** The address nginx connects to the workers from (nginx.conf proxies to them on loopback). */
export const NGINX_ADDRESS = '127.0.0.1'

/** Fastify's trustProxy: the connection's own peer (hop 0) when it is nginx, and no hop beyond it. */
export const trustsOnlyNginx = (address: string, hop: number) => hop === 0 && address === NGINX_ADDRESS

export interface BuildOptions {
  /** Overrides the pino options, e.g. `false` in tests. */
  logger?: FastifyServerOptions['logger']
}

export function loggerOptions(config: Config): FastifyServerOptions['logger'] {
  return {
    level: config.LOG_LEVEL,
    base: { instance: config.NODE_APP_INSTANCE },
    // Tokens and cookies never reach the log, whoever logs the request.
    redact: ['req.headers.authorization', 'req.headers.cookie', 'req.headers["idempotency-key"]'],
  }
}

/**
 * Builds the app from an explicit, ordered list of plugins: infrastructure first, routes after.
 * Nothing is auto-loaded, so the order you read here is the order Fastify runs.
 */
export async function buildApp(config: Config, options: BuildOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({
    logger: options.logger ?? loggerOptions(config),
    bodyLimit: config.BODY_LIMIT_BYTES,
    // nginx stamps every request with X-Request-Id; reuse it so one id follows the request end to end.
    requestIdHeader: 'x-request-id',
    genReqId: () => randomUUID(),
    // Behind nginx on loopback: the app's limits key on the address nginx saw, which nginx writes as the
    // only X-Forwarded-For entry (nginx.conf). Only that last hop is trusted: an address a client wrote
    // into its own X-Forwarded-For sits before it and is never read.
    trustProxy: trustsOnlyNginx,
    // Requests refused before routing, in the API's `{ code, message }` too (src/plugins/error-handler.plugin.ts).
    clientErrorHandler: answerClientError,
    frameworkErrors: answerFrameworkError,
    return503OnClosing: false,
  })
  app.decorate('config', config)
  app.addHook('onSend', async (request, reply) => {
    reply.header('x-request-id', request.id)
  })

  await app.register(metrics, { config })
  await app.register(errorHandler)
  await app.register(validation)
  await app.register(openapi)
  await app.register(drain)
  await app.register(postgres, { config })
  await app.register(redis, { config })
  await app.register(cache, { config })
  await app.register(authPlugin, { config })
  await app.register(idempotency)

  // Use cases are plain factories; routes get them as options and stay one line per handler.
  const catalog = createCatalog({ db: app.db, cache: app.cache })
  const cart = createCart({ db: app.db })
  // How stock is decided is chosen once, in src/purchase-wiring.ts, which the jobs process shares.
  const { rows, path, releaseHooks } = createPurchaseWiring({
    config,
    db: app.db,
    redis: app.redis,
    metrics: app.metrics,
    log: app.log,
  })
  const sales = createSales({ db: app.db, path, cache: app.cache })
  const events = createSaleEvents({
    publisher: app.redis,
    subscriber: duplicateForSubscribing(app.redis),
    snapshot: async (saleId) => numbersOf(await sales.getSale(saleId, { fresh: true })),
    intervalMs: 250,
    onError: (err) => app.log.warn({ err }, 'sale events'),
  })
  // Sales with a waiting room (src/purchase/queue/): places in Redis, admissions signed (purchase-wiring.ts).
  const { admissions, waitingRoom } = createWaitingRoomWiring(config, app.redis)
  const queue = createQueueEntry({
    waitingRoom,
    proofs: createJoinProofs(config.JWT_SECRET),
    terms: createSaleTerms((saleId) => findQueueTerms(app.db.primary, saleId)),
    registeredOnly: async (saleId) => (await sales.entryRulesOf(saleId)).registeredOnly,
  })
  const purchases = createPurchases({
    path,
    sales,
    config,
    rateLimiter: createRateLimiter(app.redis),
    metrics: app.metrics,
    admissions,
    waitingRoom,
    saleChanged: events.changed,
    soldOut: events.soldOut,
  })
  const orders = createOrders({
    db: app.db,
    config,
    rows,
    payments: createSimulatedPaymentProvider({
      db: app.db.primary,
      latencyMs: config.PAYMENT_LATENCY_MS,
      failureRate: config.PAYMENT_FAILURE_RATE,
    }),
    metrics: app.metrics,
    releaseHooks: releaseHooks(events.changed),
  })
  // A stopping worker writes the orders it has admitted before its pools close.
  app.addHook('preClose', async () => {
    await path.flush()
    await events.close()
  })

  await app.register(healthRoutes)
  await app.register(authRoutes)
  await app.register(productRoutes, { catalog })
  await app.register(productAdminRoutes, { catalog })
  await app.register(cartRoutes, { cart })
  await app.register(orderRoutes, { orders })
  await app.register(saleRoutes, { sales, events })
  await app.register(purchaseRoutes, { purchases })
  await app.register(queueRoutes, { queue })
  await app.register(saleAdminRoutes, { sales })

  return app
}
