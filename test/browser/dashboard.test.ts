import type { FastifyInstance } from 'fastify'
import type { Browser, Page } from 'playwright-core'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { newCustomer, newSale, type TestUser } from '../support/app.js'
import { asVisitor, describeBrowser } from '../support/browser.js'
import {
  WAIT,
  buyThroughNginx,
  expectPageShape,
  uniqueName,
  closeBrowserSuite,
  openBrowserSuite,
} from './shop-helpers.js'

// The live dashboard while a short stampede runs through nginx: the stream stays live and the numbers move.

const OUTPUTS = [
  'answers-per-second',
  'answers-total',
  'p50-ms',
  'p99-ms',
  'sold-units',
  'left-units',
  'batch-size',
  'cache-hit-ratio',
  'replica-lag-ms',
]
const PANELS = [
  'Sale progress',
  'Answers per second',
  'Latency',
  'Conflicts and retries',
  'Batch size',
  'Cache hit ratio',
  'Replica lag',
]

async function answersTotal(page: Page): Promise<number> {
  const text = (await page.locator('#answers-total').innerText()).replace(/[^\d]/g, '')
  return text === '' ? NaN : Number(text)
}

describeBrowser('the live dashboard in a browser', () => {
  let browser: Browser
  let app: FastifyInstance
  let admin: TestUser

  beforeAll(async () => ({ browser, app, admin } = await openBrowserSuite()))
  afterAll(() => closeBrowserSuite(browser, app))

  it('when a few hundred purchases run through nginx, then the dashboard stays live and its answer count grows', async () => {
    // The dashboard follows the most recently started sales, and this one has just started. It ends in three
    // minutes rather than the usual hour, so it does not stay live in the shop for the rest of the run.
    const saleId = await newSale(app, admin, {
      durationMs: 3 * 60_000,
      units: 40,
      perUserLimit: 1,
      productName: uniqueName('Dashboard drone'),
    })
    const buyers = await Promise.all(Array.from({ length: 20 }, () => newCustomer(app)))

    await asVisitor(browser, 'desktop', async (shop) => {
      const page = await shop.newPage('/dashboard')
      await expectPageShape(page, 'Live dashboard')
      for (const panel of PANELS)
        await page
          .locator('section')
          .filter({ has: page.getByRole('heading', { level: 2, name: panel }) })
          .waitFor(WAIT)
      for (const id of OUTPUTS)
        expect(await page.locator(`output#${id}`).count(), `<output id="${id}">`).toBe(1)
      // Show this test's sale: the choice lists the live sales, by id.
      const choice = page.getByRole('combobox', { name: 'Sale', exact: true })
      await choice.locator(`option[value="${saleId}"]`).waitFor({ ...WAIT, state: 'attached' })
      await choice.selectOption(String(saleId))
      await expect.poll(() => page.locator('#stream-status').innerText(), WAIT).toBe('live')
      await expect.poll(() => answersTotal(page), WAIT).not.toBeNaN()
      const before = await answersTotal(page)

      // 300 purchases, 10 at a time: 20 buyers, one unit each, then "per-customer limit" answers (and
      // nginx's 429 once the burst allowance is spent). Every answer from the app is counted.
      const statuses: number[] = []
      let next = 0
      await Promise.all(
        Array.from({ length: 10 }, async () => {
          while (next < 300) {
            const buyer = buyers[next++ % buyers.length]!
            statuses.push(await buyThroughNginx(saleId, buyer.token))
          }
        }),
      )
      expect(statuses.filter((s) => s === 201)).toHaveLength(20)
      expect(
        statuses.filter((s) => s >= 500),
        'no 5xx during the run',
      ).toEqual([])

      await expect.poll(() => answersTotal(page), WAIT).toBeGreaterThanOrEqual(before + 50)
      // 20 buyers, one unit each, of 40.
      await expect.poll(() => page.locator('#sold-units').innerText(), WAIT).toMatch(/^20\b/)
      await expect.poll(() => page.locator('#left-units').innerText(), WAIT).toMatch(/^20\b/)
      expect(await page.locator('#stream-status').innerText()).toBe('live')
      expect(await page.locator('svg').count(), 'charts drawn as inline SVG').toBeGreaterThan(0)
    })
  })
})
