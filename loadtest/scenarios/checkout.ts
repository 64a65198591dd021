import { randomUUID } from 'node:crypto'
import { createLoadTestUsers } from '../../src/auth/load-test-users.js'
import { putOneUnitInCart } from '../cart-steps.js'
import { runLoad } from '../load.js'
import type { ScenarioRun } from '../scenario.js'
import { finishRun, withMetrics, type LoadShape, type ScenarioContext } from './common.js'

// The ordinary shop under load: each turn, one user reads their cart (ETag), puts one unit of the
// load-test product in it (If-Match), checks out (Idempotency-Key) and pays. Every checkout decides
// stock on the same inventory row with the configured strategy, so conflicts and retries show up.
// A step that cannot go on (412 stale cart, 409 OUT_OF_STOCK) ends the turn; the next user starts.

export interface CheckoutParams extends LoadShape {
  users: number
  /** Units put on the load-test product before the run. */
  units: number
}

export const CHECKOUT_DEFAULTS: CheckoutParams = { connections: 50, duration: 10, users: 400, units: 1000 }

export async function checkout(ctx: ScenarioContext, params: CheckoutParams): Promise<ScenarioRun> {
  const { target, admin } = ctx
  const productId = await admin.loadTestProduct(target.db)
  await admin.restock(productId, params.units)
  const users = await createLoadTestUsers(target.db, target.config, params.users)
  ctx.log(`product ${productId} restocked by ${params.units}; ${users.length} shoppers`)

  const run = randomUUID().slice(0, 8)
  const orderIds = new Set<string>()
  let duplicateFreshIds = 0
  let next = 0
  let paid = 0
  const auth = (context: Record<string, unknown>) => `Bearer ${users[context.user as number]!.token}`

  const { value: load, metrics } = await withMetrics(target, () =>
    runLoad({
      title: 'checkout',
      url: target.nginxUrl,
      connections: params.connections,
      durationSeconds: params.duration,
      progressNote: () => `${orderIds.size} orders, ${paid} paid`,
      requests: [
        {
          method: 'GET',
          path: '/api/cart',
          setupRequest: (request, context) => {
            context.turn = next++
            context.user = (context.turn as number) % users.length
            request.headers = { authorization: auth(context) }
            return request
          },
          onResponse: (status, _body, context, headers) => {
            if (status === 200) context.etag = headers.etag
          },
        },
        putOneUnitInCart(productId, auth),
        {
          method: 'POST',
          path: '/api/checkout',
          setupRequest: (request, context) => {
            if (!context.inCart) return null
            request.headers = { authorization: auth(context), 'idempotency-key': `${run}-co-${context.turn}` }
            return request
          },
          onResponse: (status, body, context) => {
            if (status !== 201) return
            const id = (JSON.parse(body) as { id: string }).id
            if (orderIds.has(id)) duplicateFreshIds++
            orderIds.add(id)
            context.orderId = id
          },
        },
        {
          method: 'POST',
          setupRequest: (request, context) => {
            if (typeof context.orderId !== 'string') return null
            request.path = `/api/orders/${context.orderId}/pay`
            request.headers = {
              authorization: auth(context),
              'idempotency-key': `${run}-pay-${context.orderId}`,
            }
            return request
          },
          onResponse: (status) => {
            if (status === 200) paid++
          },
        },
      ],
    }),
  )
  return finishRun(ctx, {
    scenario: 'checkout',
    params: { ...params },
    startedAt: load.startedAt,
    load,
    stock: [],
    metrics,
    evidence: {
      saleIds: [],
      userIds: users.map((u) => u.id),
      orderIds,
      duplicateFreshIds,
      unanswered: load.unanswered + load.errors,
    },
  })
}
