import { setTimeout as sleep } from 'node:timers/promises'
import { createLoadTestUsers, type LoadTestUser } from '../../src/auth/load-test-users.js'
import type { Sale } from '../admin.js'
import type { CaseContext } from './campaign.js'

// The replica-outage case's witness: a few buyers who read back at once what they just did (an order,
// a cart), through nginx, while the load and the fault run. Read-your-writes must hold whatever the
// replica does, because orders and carts are read from the primary.

/** What the read-your-writes prober saw: every own order and cart read right after the write. */
export interface ProbeResult {
  orderReads: number
  orderMisses: number
  cartReads: number
  cartMisses: number
  /** Answers that were neither the expected one nor a "no" the API may give (409, 429). */
  unexpected: Record<string, number>
}

/**
 * A few buyers who check what they just did: after each 201 they read the order back, after each cart
 * write they read the cart back, at once, through nginx. Both reads must see the write (read-your-writes
 * on the primary), whatever the replica is doing.
 */
export async function startProber(ctx: Pick<CaseContext, 'target' | 'productId'>, sale: Sale) {
  const users = await createLoadTestUsers(ctx.target.db, ctx.target.config, 40)
  const result: ProbeResult = { orderReads: 0, orderMisses: 0, cartReads: 0, cartMisses: 0, unexpected: {} }
  const url = ctx.target.nginxUrl
  let stopped = false
  const odd = (what: string, status: number) => {
    const key = `${what} ${status}`
    result.unexpected[key] = (result.unexpected[key] ?? 0) + 1
  }
  const call = async (user: LoadTestUser, method: string, route: string, body?: unknown, headers = {}) => {
    const response = await fetch(`${url}${route}`, {
      method,
      headers: {
        authorization: `Bearer ${user.token}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        ...headers,
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(10_000),
    })
    return {
      status: response.status,
      etag: response.headers.get('etag'),
      json: (await response.json()) as unknown,
    }
  }
  const loop = async (user: LoadTestUser, n: number) => {
    for (let round = 0; !stopped; round++) {
      const bought = await call(
        user,
        'POST',
        `/api/sales/${sale.id}/purchase`,
        { quantity: 1 },
        {
          'idempotency-key': `probe-${n}-${round}`,
        },
      )
      if (bought.status === 201) {
        const id = (bought.json as { id: string }).id
        const read = await call(user, 'GET', `/api/orders/${id}`)
        result.orderReads++
        if (read.status !== 200 || (read.json as { id?: string }).id !== id) result.orderMisses++
      } else if (bought.status !== 409 && bought.status !== 429) odd('purchase', bought.status)
      const cart = await call(user, 'GET', '/api/cart')
      if (cart.status !== 200) odd('cart read', cart.status)
      const quantity = (round % 3) + 1
      const written = await call(
        user,
        'PUT',
        `/api/cart/items/${ctx.productId}`,
        { quantity },
        {
          'if-match': cart.etag ?? '*',
        },
      )
      if (written.status === 200) {
        const reread = await call(user, 'GET', '/api/cart')
        result.cartReads++
        const items = (reread.json as { items?: { productId: number; quantity: number }[] }).items ?? []
        if (!items.some((i) => i.productId === ctx.productId && i.quantity === quantity)) result.cartMisses++
      } else odd('cart write', written.status)
      await sleep(100)
    }
  }
  const loops = users.map((user, n) => loop(user, n).catch((err: Error) => odd(`prober ${err.name}`, 0)))
  return {
    async stop(): Promise<ProbeResult> {
      stopped = true
      await Promise.all(loops)
      return result
    },
  }
}
