import type { FastifyInstance } from 'fastify'
import type { Browser, Page } from 'playwright-core'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { newSale, type TestUser } from '../support/app.js'
import {
  VIEWPORTS,
  asVisitor,
  describeBrowser,
  screenshot,
  seriousA11yViolations,
  type ViewportName,
} from '../support/browser.js'
import {
  WAIT,
  cartButton,
  closeBrowserSuite,
  exactly,
  expectPageShape,
  firstAddableProduct,
  openBrowserSuite,
  productOfSale,
  toastsOverButtons,
  uniqueName,
} from './shop-helpers.js'

// Every page of the shop and the dashboard at desktop and mobile size: the page shape (one <h1>, a
// <main>, a title), an axe-core scan with no serious or critical violation, no console error, and a
// screenshot in .stack/screenshots/ for a person to look at.

describeBrowser('every page in a browser', () => {
  let browser: Browser
  let app: FastifyInstance
  let admin: TestUser
  let saleId: number
  let productId: number
  const saleName = uniqueName('Every page drone')

  beforeAll(async () => {
    ;({ browser, app, admin } = await openBrowserSuite())
    saleId = await newSale(app, admin, { units: 20, perUserLimit: 1, productName: saleName })
    productId = await productOfSale(app, saleId)
  })
  afterAll(() => closeBrowserSuite(browser, app))

  for (const viewport of Object.keys(VIEWPORTS) as ViewportName[]) {
    it(`when every page is opened at ${viewport} size, then each has one <h1>, no serious accessibility violation and no console error`, async () => {
      await asVisitor(browser, viewport, async (shop) => {
        const page = await shop.newPage('/')
        // Each page is checked even when an earlier one failed, so one run lists every failure.
        const failures: string[] = []
        const check = async (name: string, open: () => Promise<void>, heading?: string | RegExp) => {
          try {
            await open()
            await expectPageShape(page, heading)
            // Images loaded (or replaced by their fallback; lazy ones load when scrolled to) before the
            // picture and the scan. Not "networkidle": a page with a live stream always has a request open.
            await expect
              .poll(
                () =>
                  page.evaluate(
                    `Array.from(document.images).every((i) => i.complete || i.loading === 'lazy')`,
                  ),
                WAIT,
              )
              .toBe(true)
            // Transitions finished (a toast fading in has, for a moment, too little contrast).
            await page.evaluate(
              `Promise.all(document.getAnimations().filter((a) => a.effect?.getComputedTiming().iterations !== Infinity).map((a) => a.finished.catch(() => {})))`,
            )
            await screenshot(page, name, viewport)
            failures.push(...(await seriousA11yViolations(page)).map((v) => `${name}: ${v}`))
          } catch (error) {
            failures.push(`${name}: ${(error as Error).message.split('\n')[0]}`)
          }
        }
        // Opens the page and waits for what shows that it is drawn (live numbers arrive after the heading).
        const go = (path: string, drawn?: string | RegExp) => async () => {
          await page.goto(path)
          if (drawn !== undefined) await page.getByText(drawn).first().waitFor(WAIT)
        }
        const LIVE_NUMBERS = /\d+ of \d+ left/

        await check('home', go('/', LIVE_NUMBERS), 'Stampede shop')
        await check(
          'cart',
          async () => {
            const { button } = await firstAddableProduct(page)
            await button.click()
            await cartButton(page, 1).click()
            await page.getByRole('dialog', { name: 'Your cart' }).waitFor(WAIT)
          },
          'Stampede shop',
        )
        await check('product', go(`/products/${productId}`, /\$\d+\.\d\d/), saleName)
        await check(
          'search',
          go(`/search?q=${encodeURIComponent(saleName.split(' ').at(-1)!)}`, saleName),
          'Search results',
        )
        await check('sale', go(`/sales/${saleId}`, LIVE_NUMBERS), `${saleName} flash sale`)
        await check(
          'order',
          async () => {
            await page.getByRole('button', { name: exactly(`Buy ${saleName} now`) }).click()
            await page.waitForURL(/\/orders\/[0-9a-f-]{36}$/, WAIT)
            // The purchase's toast is on screen now, next to Pay (simulated) and Cancel order.
            await page.getByRole('button', { name: 'Pay (simulated)' }).waitFor(WAIT)
            const covered = await toastsOverButtons(page)
            if (covered.length > 0) throw new Error(`toasts cover buttons: ${covered.join('; ')}`)
          },
          /^Order \S+$/,
        )
        await check('orders', go('/orders', /^Order \S+$/), 'Your orders')
        await check('signin', go('/signin'), 'Sign in')
        await check('register', go('/register'), 'Create an account')
        await check('dashboard', go('/dashboard', /^live$/), 'Live dashboard')
        expect(failures, `pages at ${viewport} size`).toEqual([])
      })
      // Ten pages, each waited for: when several fail, each waits its full timeout before the list.
    }, 240_000)
  }

  it('when pages are opened, then none of them fails to load its own scripts or styles under the Content-Security-Policy', async () => {
    await asVisitor(browser, 'desktop', async (shop) => {
      const page: Page = await shop.newPage('/')
      const csp = await page.evaluate(`fetch('/').then((r) => r.headers.get('content-security-policy'))`)
      expect(csp, 'nginx sends the Content-Security-Policy').toMatch(/default-src 'self'/)
      expect(String(csp)).not.toMatch(/unsafe-inline|unsafe-eval/)
      for (const path of ['/', '/dashboard']) {
        await page.goto(path)
        await expectPageShape(page)
      }
      // Any "Refused to ..." line of the browser is a console error, which asVisitor fails on.
    })
  })
})
