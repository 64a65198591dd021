import type { FastifyInstance } from 'fastify'
import { get, type ClientRequest } from 'node:http'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { DashboardSample } from '../src/dashboard/dashboard-feed.js'
import { buildTestApp, newAdmin, newCustomer, newSale, type TestUser } from './support/app.js'
import { testStack } from './support/stack-env.js'

// The live dashboard end to end: nginx serves the page and the stream, the jobs process computes the
// samples from the workers' metrics and the sale's own numbers, purchases go through nginx.

const stack = testStack()
const hasCluster = stack.nginxUrl !== undefined

interface DashboardStream {
  history: DashboardSample[]
  /** Every `sample` event received so far, in order. */
  received: DashboardSample[]
  /** Resolves with the first sample (from now on) that passes `test`; the test's timeout bounds the wait. */
  until(test: (sample: DashboardSample) => boolean): Promise<DashboardSample>
  close(): void
}

/** Opens /api/dashboard/stream through nginx, as the page does, and parses its events. */
function openDashboard(): Promise<DashboardStream> {
  return new Promise((resolve, reject) => {
    const waiting = new Set<{ test: (s: DashboardSample) => boolean; done: (s: DashboardSample) => void }>()
    let request: ClientRequest | undefined = undefined
    let buffer = ''
    let history: DashboardSample[] | undefined
    const received: DashboardSample[] = []
    const stream: Omit<DashboardStream, 'history'> = {
      received,
      until: (test) => new Promise((done) => waiting.add({ test, done })),
      close: () => request?.destroy(),
    }
    request = get(`${stack.nginxUrl}/api/dashboard/stream`, { agent: false }, (response) => {
      if (
        response.statusCode !== 200 ||
        !/^text\/event-stream/.test(response.headers['content-type'] ?? '')
      ) {
        reject(new Error(`the stream answered ${response.statusCode} ${response.headers['content-type']}`))
        return
      }
      response.setEncoding('utf8').on('data', (chunk: string) => {
        buffer += chunk
        let end: number
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end)
          buffer = buffer.slice(end + 2)
          const event = /^event: (.*)$/m.exec(block)?.[1]
          const data = /^data: (.*)$/m.exec(block)?.[1]
          if (event === 'history' && data) {
            history = JSON.parse(data) as DashboardSample[]
            resolve({ ...stream, history })
          } else if (event === 'sample' && data) {
            const sample = JSON.parse(data) as DashboardSample
            received.push(sample)
            for (const waiter of waiting) {
              if (waiter.test(sample)) {
                waiting.delete(waiter)
                waiter.done(sample)
              }
            }
          }
        }
      })
    })
    request.on('error', reject)
  })
}

async function buyThroughNginx(saleId: number, buyer: TestUser): Promise<number> {
  const response = await fetch(`${stack.nginxUrl}/api/sales/${saleId}/purchase`, {
    method: 'POST',
    headers: { ...buyer.headers, 'content-type': 'application/json' },
    body: JSON.stringify({ quantity: 1 }),
  })
  await response.body?.cancel()
  return response.status
}

describe.runIf(hasCluster)('the live dashboard', () => {
  let app: FastifyInstance
  let admin: TestUser

  beforeAll(async () => {
    app = await buildTestApp()
    admin = await newAdmin(app)
  })
  afterAll(async () => {
    await app?.close()
  })

  it('when /dashboard is asked for, then nginx serves the page with its heading, outputs and module under the CSP', async () => {
    const response = await fetch(`${stack.nginxUrl}/dashboard`)
    const html = await response.text()
    expect(response.status).toBe(200)
    expect(response.headers.get('content-type')).toMatch(/^text\/html/)
    expect(response.headers.get('content-security-policy')).toContain("default-src 'self'")
    expect(html).toContain('<h1>Live dashboard</h1>')
    for (const id of [
      'answers-per-second',
      'answers-total',
      'p50-ms',
      'p99-ms',
      'sold-units',
      'left-units',
    ]) {
      expect(html).toContain(`<output id="${id}"`)
    }
    expect(html).not.toMatch(/<script>|<style>| style="/)
    const script = await fetch(`${stack.nginxUrl}/dashboard.js`)
    expect(script.status).toBe(200)
    expect(script.headers.get('content-type')).toMatch(/javascript/)
  })

  it('when buyers stampede a sale through nginx, then the stream counts their answers by outcome and the sale sells out', async () => {
    const units = 4
    const saleId = await newSale(app, admin, { units, perUserLimit: 1 })
    const buyers = await Promise.all(Array.from({ length: units + 3 }, () => newCustomer(app)))
    const dashboard = await openDashboard()
    try {
      expect(dashboard.history.length).toBeGreaterThan(0)
      const before = await dashboard.until((s) => s.sales.some((sale) => sale.saleId === saleId))
      expect(before.sales.find((sale) => sale.saleId === saleId)).toMatchObject({
        remaining: units,
        taken: 0,
        unitsTotal: units,
      })

      const statuses = await Promise.all(buyers.map((buyer) => buyThroughNginx(saleId, buyer)))
      expect(statuses.filter((s) => s === 201)).toHaveLength(units)
      expect(statuses.filter((s) => s === 409)).toHaveLength(3)

      // The sale's own numbers: every unit taken, none left.
      const soldOut = await dashboard.until((s) => {
        const sale = s.sales.find((x) => x.saleId === saleId)
        return sale?.taken === units && sale.remaining === 0
      })
      expect(soldOut.sales.find((x) => x.saleId === saleId)?.status).toBe('sold_out')

      // The answers: each sample gives rates per second over its interval; added up since `before`,
      // they hold these buyers' 4 orders and 3 refusals by their code.
      const counted = (outcome: string) =>
        Math.round(
          dashboard.received
            .filter((s) => s.at > before.at)
            .reduce((sum, s) => sum + (s.answers.byOutcome[outcome] ?? 0) * s.seconds, 0),
        )
      const after = await dashboard.until(() => counted('409 SOLD_OUT') >= 3 && counted('2xx') >= units)
      expect(counted('409 SOLD_OUT')).toBe(3)
      expect(Number.isInteger(after.answers.total)).toBe(true)
      expect(after.answers.total - before.answers.total).toBeGreaterThanOrEqual(buyers.length)
    } finally {
      dashboard.close()
    }
  })

  it('when a second viewer connects, then it gets the history so far and the same samples as the first', async () => {
    const first = await openDashboard()
    const second = await openDashboard()
    try {
      expect(second.history.length).toBeGreaterThanOrEqual(first.history.length)
      const next = await first.until(() => true)
      await second.until((s) => s.at > next.at)
      expect(second.received.find((s) => s.at === next.at)).toEqual(next)
    } finally {
      first.close()
      second.close()
    }
  })
})
