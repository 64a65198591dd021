import type { FastifyInstance } from 'fastify'
import type { Browser, Page } from 'playwright-core'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { newCustomer, newSale, type TestUser } from '../support/app.js'
import { asVisitor, describeBrowser } from '../support/browser.js'
import {
  WAIT,
  buyThroughNginx,
  exactly,
  expectPageShape,
  firstAddableProduct,
  productOfSale,
  uniqueName,
  waitForTextIn,
  closeBrowserSuite,
  openBrowserSuite,
} from './shop-helpers.js'

// Flash sales in the browser: buying on a sale page as a guest, and the live numbers of several tabs,
// which must never take the connections the shop's own API calls need.

/**
 * Clicks the first Add to cart of the page and waits for the API's answer to reach the page. Any answer
 * will do: a tab whose cart is older than the other tab's may hear "changed in another tab" (412).
 */
async function addToCartAnswers(page: Page): Promise<void> {
  const { button } = await firstAddableProduct(page)
  const answer = page.waitForResponse((r) => r.url().includes('/api/cart/items/'), WAIT)
  await button.click()
  expect((await answer).status()).toBeLessThan(500)
  await page.getByRole('button', { name: /^Cart, [1-9]\d* items?\b/ }).waitFor(WAIT)
}

describeBrowser('flash sales in a browser', () => {
  let browser: Browser
  let app: FastifyInstance
  let admin: TestUser

  beforeAll(async () => ({ browser, app, admin } = await openBrowserSuite()))
  afterAll(() => closeBrowserSuite(browser, app))

  it('when a guest buys on the sale page, then the order page shows Reserved, and after Pay (simulated) Paid', async () => {
    const name = uniqueName('Sale page drone')
    const saleId = await newSale(app, admin, { units: 5, perUserLimit: 2, productName: name })
    const productId = await productOfSale(app, saleId)

    await asVisitor(browser, 'desktop', async (shop) => {
      // The product page points to its sale.
      const page = await shop.newPage(`/products/${productId}`)
      await expectPageShape(page, name)
      const toSale = page.locator(`a[href="/sales/${saleId}"]`)
      await toSale.first().waitFor(WAIT)
      await toSale.first().click()

      await expectPageShape(page, `${name} flash sale`)
      expect(new URL(page.url()).pathname).toBe(`/sales/${saleId}`)
      const main = page.locator('main')
      await waitForTextIn(main, 'Live')
      await waitForTextIn(main, '5 of 5 left')
      await waitForTextIn(main, 'You hold 0 of 2')

      await page.getByRole('button', { name: exactly(`Buy ${name} now`) }).click()
      await page.waitForURL(/\/orders\/[0-9a-f-]{36}$/, WAIT)
      await expectPageShape(page, /^Order \S+$/)
      await waitForTextIn(main, 'Reserved')
      await waitForTextIn(main, name)
      await page.getByRole('button', { name: exactly('Cancel order') }).waitFor(WAIT)
      await page.getByRole('button', { name: exactly('Pay (simulated)') }).click()
      await waitForTextIn(main, 'Paid')

      // The order page survives a reload, and the orders list links to it by its number.
      const orderPath = new URL(page.url()).pathname
      const heading = (await page.locator('h1').innerText()).trim()
      await page.reload()
      await expectPageShape(page, heading)
      await page.goto('/orders')
      await expectPageShape(page, 'Your orders')
      expect(await page.getByRole('link', { name: exactly(heading) }).getAttribute('href')).toBe(orderPath)

      await page.goto(`/sales/${saleId}`)
      await expectPageShape(page, `${name} flash sale`)
      await waitForTextIn(main, '4 of 5 left')
      await waitForTextIn(main, 'You hold 1 of 2')

      // Somebody else's order is not shown.
      shop.allow(/Failed to load resource: the server responded with a status of 404/)
      await page.goto('/orders/00000000-0000-4000-8000-000000000000')
      await expectPageShape(page, 'Order not found')
    })
  })

  it('when a sale has a waiting room, then a shopper joins once (two tabs, one place; a reload keeps it), is told when it is its turn, buys, and a shopper behind hears Sold out', async () => {
    const name = uniqueName('Queue drone')
    // With a small proof of work: the page solves it before it takes the place.
    const saleId = await newSale(app, admin, {
      units: 1,
      productName: name,
      queue: 'fifo',
      queueDifficulty: 2000,
      startsInMs: 6000,
    })

    await asVisitor(browser, 'desktop', async (first) => {
      await asVisitor(browser, 'desktop', async (second) => {
        const page = await first.newPage(`/sales/${saleId}`)
        await expectPageShape(page, `${name} flash sale`)
        const main = page.locator('main')
        await waitForTextIn(main, 'This sale has a waiting room')
        expect(await page.getByRole('button', { name: exactly(`Buy ${name} now`) }).isVisible()).toBe(false)
        await page.getByRole('button', { name: exactly(`Join the queue for ${name}`) }).click()
        await waitForTextIn(main, 'Your place: 1.')

        // A second tab of the same shopper: the same place, and nothing to join.
        const tab = await first.newPage(`/sales/${saleId}`)
        await waitForTextIn(tab.locator('main'), 'Your place: 1.')
        expect(
          await tab.getByRole('button', { name: exactly(`Join the queue for ${name}`) }).isVisible(),
        ).toBe(false)
        await tab.close()
        await page.reload()
        await waitForTextIn(page.locator('main'), 'Your place: 1.')

        // Another shopper queues behind.
        const behind = await second.newPage(`/sales/${saleId}`)
        await behind.getByRole('button', { name: exactly(`Join the queue for ${name}`) }).click()
        await waitForTextIn(behind.locator('main'), 'Your place: 2. 1 buyer ahead of you')

        // The sale opens: the first is let in (one unit, k = 1.5: one place), buys, and the unit is gone.
        await waitForTextIn(page.locator('main'), "It's your turn: buy within")
        await page.getByRole('button', { name: exactly(`Buy ${name} now`) }).click()
        await page.waitForURL(/\/orders\/[0-9a-f-]{36}$/, WAIT)
        await waitForTextIn(behind.locator('main'), 'Sold out: every unit is taken')
      })
    })
  })

  it('when Buy is double-clicked, then one purchase request is sent and the button is busy while it is in flight', async () => {
    const name = uniqueName('Double click drone')
    const saleId = await newSale(app, admin, { units: 5, perUserLimit: 2, productName: name })

    await asVisitor(browser, 'desktop', async (shop) => {
      const page = await shop.newPage(`/sales/${saleId}`)
      await expectPageShape(page, `${name} flash sale`)
      const buy = page.getByRole('button', { name: exactly(`Buy ${name} now`) })
      await waitForTextIn(page.locator('main'), '5 of 5 left')
      let release!: () => void
      const released = new Promise<void>((resolve) => (release = resolve))
      let purchases = 0
      await page.route(`**/api/sales/${saleId}/purchase`, async (route) => {
        purchases++
        await released
        await route.continue()
      })
      await buy.dblclick()
      await expect.poll(() => purchases, WAIT).toBe(1)
      expect(await buy.getAttribute('aria-busy')).toBe('true')
      expect(await buy.isDisabled()).toBe(true)
      release()
      await page.waitForURL(/\/orders\/[0-9a-f-]{36}$/, WAIT)
      expect(purchases).toBe(1)
    })
  })

  it('when two tabs show live sales and a third client buys one out, then both tabs show Sold out and Add to cart still answers in both', async () => {
    // Three live sales, so that a page holding one stream per sale would hold three connections per tab:
    // two tabs would then take all six that Chromium allows per host over HTTP/1.1.
    const name = uniqueName('Two tabs drone')
    const saleId = await newSale(app, admin, { units: 2, perUserLimit: 1, productName: name })
    await newSale(app, admin, { units: 50, productName: uniqueName('Two tabs kite') })
    await newSale(app, admin, { units: 50, productName: uniqueName('Two tabs yoyo') })

    await asVisitor(browser, 'desktop', async (shop) => {
      // Both tabs edit one cart: the write of the tab that has not seen the other's is refused by the
      // cart's ETag guard (412), by design, and the browser logs that answer itself.
      shop.allow(/Failed to load resource: the server responded with a status of 412 .*\/api\/cart\/items\//)
      const tabs = [await shop.newPage('/'), await shop.newPage('/')]
      for (const tab of tabs)
        await waitForTextIn(tab.getByRole('article', { name: exactly(name) }), '2 of 2 left')

      const buyers = [await newCustomer(app), await newCustomer(app)]
      for (const buyer of buyers) expect(await buyThroughNginx(saleId, buyer.token)).toBe(201)

      for (const tab of tabs) {
        const card = tab.getByRole('article', { name: exactly(name) })
        await waitForTextIn(card, 'Sold out')
        expect(await card.getByRole('button', { name: exactly(`Buy ${name} now`) }).isDisabled()).toBe(true)
      }
      // One visitor, two tabs, one cart: each Add gets its answer.
      await addToCartAnswers(tabs[0]!)
      await addToCartAnswers(tabs[1]!)
    })
  })

  it('when the home page comes back from the back/forward cache, then Add to cart still answers', async () => {
    await newSale(app, admin, { units: 50, productName: uniqueName('Back forward drone') })
    await asVisitor(browser, 'desktop', async (shop) => {
      const page = await shop.context.newPage()
      await page.addInitScript({
        content: `addEventListener('pageshow', (event) => { globalThis.restoredFromCache = event.persisted })`,
      })
      await page.goto('/')
      await expectPageShape(page, 'Stampede shop')
      await page
        .getByText(/\d+ of \d+ left/)
        .first()
        .waitFor(WAIT)
      await page.goto('/?a')
      await expectPageShape(page, 'Stampede shop')
      await page
        .getByText(/\d+ of \d+ left/)
        .first()
        .waitFor(WAIT)
      // A page restored from the cache fires no load event: wait for the navigation only.
      await page.goBack({ waitUntil: 'commit' })
      await expectPageShape(page, 'Stampede shop')
      const restored = await page.evaluate(
        () => (globalThis as { restoredFromCache?: boolean }).restoredFromCache,
      )
      console.log(
        `[browser tests] back/forward: the page was ${restored ? '' : 'not '}restored from the cache`,
      )
      await addToCartAnswers(page)
    })
  })
})
