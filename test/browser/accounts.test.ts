import { randomUUID } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import type { Browser, Page } from 'playwright-core'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { newProduct, type TestUser } from '../support/app.js'
import { asVisitor, describeBrowser } from '../support/browser.js'
import { testStack } from '../support/stack-env.js'
import {
  TOKEN_KEY,
  WAIT,
  cartButton,
  exactly,
  expectPageShape,
  firstAddableProduct,
  signToken,
  uniqueName,
  waitForTextIn,
  closeBrowserSuite,
  openBrowserSuite,
} from './shop-helpers.js'

// Accounts in the browser: registering, signing in and out, a signed-in checkout from the cart, and a
// stored token the API no longer accepts.

const PASSWORD = 'correct horse battery'

async function fillCredentials(page: Page, email: string, password: string): Promise<void> {
  const main = page.locator('main')
  await main.getByLabel('Email').fill(email)
  await main.getByLabel('Password').fill(password)
}

async function expectSignedIn(page: Page, email: string): Promise<void> {
  await page.getByText(`Signed in as ${email}`).waitFor(WAIT)
  await page.getByRole('button', { name: exactly('Sign out') }).waitFor(WAIT)
}

describeBrowser('accounts in a browser', () => {
  let browser: Browser
  let app: FastifyInstance
  let admin: TestUser

  beforeAll(async () => ({ browser, app, admin } = await openBrowserSuite()))
  afterAll(() => closeBrowserSuite(browser, app))

  it('when a shopper registers and checks out from the cart, then the order page shows the order, and sign out and in work', async () => {
    const name = uniqueName('Signed in scooter')
    const productId = await newProduct(app, admin, {
      name,
      description: 'For the signed-in test.',
      priceCents: 2500,
      stock: 5,
    })
    const email = `shopper-${randomUUID()}@test.stampede.local`

    await asVisitor(browser, 'desktop', async (shop) => {
      const page = await shop.newPage(`/products/${productId}`)
      await expectPageShape(page, name)
      await page.getByRole('link', { name: exactly('Sign in') }).click()
      await expectPageShape(page, 'Sign in')
      await page.getByRole('link', { name: exactly('Create an account') }).click()
      await expectPageShape(page, 'Create an account')
      expect(new URL(page.url()).pathname).toBe('/register')
      await fillCredentials(page, email, PASSWORD)
      await page.getByRole('button', { name: exactly('Create account') }).click()
      await expectSignedIn(page, email)
      // Back where the shopper came from.
      await expectPageShape(page, name)

      await page.getByRole('button', { name: exactly(`Add ${name} to cart`) }).click()
      const cart = cartButton(page, 1)
      await cart.waitFor(WAIT)
      await cart.click()
      const dialog = page.getByRole('dialog', { name: 'Your cart' })
      await dialog.getByText('Payment is simulated: no card is charged.').waitFor(WAIT)
      await dialog.getByRole('button', { name: exactly('Checkout') }).click()
      await page.waitForURL(/\/orders\/[0-9a-f-]{36}$/, WAIT)
      await dialog.waitFor({ ...WAIT, state: 'hidden' })
      await expectPageShape(page, /^Order \S+$/)
      const main = page.locator('main')
      await waitForTextIn(main, 'Reserved')
      await waitForTextIn(main, name)
      await waitForTextIn(main, '$25.00')
      await cartButton(page, 0).waitFor(WAIT)

      await page.getByRole('button', { name: exactly('Sign out') }).click()
      await page.getByRole('link', { name: exactly('Sign in') }).waitFor(WAIT)
      expect(await page.getByText(`Signed in as ${email}`).count()).toBe(0)

      await page.goto('/signin')
      await expectPageShape(page, 'Sign in')
      await fillCredentials(page, email, PASSWORD)
      await page
        .getByRole('button', { name: exactly('Sign in') })
        .last()
        .click()
      await expectSignedIn(page, email)
      await page.goto('/orders')
      await expectPageShape(page, 'Your orders')
      await page
        .getByRole('link', { name: /^Order \S+$/ })
        .first()
        .waitFor(WAIT)
    })
  })

  it('when a seeded customer mistypes the password, then the form says so, and the right password signs in', async () => {
    await asVisitor(browser, 'mobile', async (shop) => {
      // The API refuses the wrong password with 401; the browser logs that answer itself.
      shop.allow(/Failed to load resource: the server responded with a status of 401/)
      const page = await shop.newPage('/signin')
      await expectPageShape(page, 'Sign in')
      await fillCredentials(page, 'alice@stampede.local', 'not-the-password')
      const submit = page.locator('main').getByRole('button', { name: exactly('Sign in') })
      await submit.click()
      await page.locator('main form').getByRole('alert').first().waitFor(WAIT)
      await fillCredentials(page, 'alice@stampede.local', 'stampede-demo')
      await submit.click()
      await expectSignedIn(page, 'alice@stampede.local')
    })
  })

  for (const [what, mint] of [
    ['signed with another secret', () => signToken(`another-${randomUUID()}`)],
    // What a browser holds after the database was seeded afresh: the secret is right, the user is gone.
    ['for a user that does not exist', () => signToken(testStack().jwtSecret, randomUUID())],
  ] as const) {
    it(`when the stored token is ${what}, then the shop continues as a new guest and Add to cart answers`, async () => {
      await asVisitor(browser, 'desktop', async (shop) => {
        shop.allow(/Failed to load resource: the server responded with a status of 401/)
        const page = await shop.newPage('/')
        await expectPageShape(page, 'Stampede shop')
        // The page asks for its guest token while it draws: planted before that answer arrives, the
        // planted token would be overwritten by it, and the next page would find nothing to recover from.
        await page.waitForFunction(
          `localStorage.getItem(${JSON.stringify(TOKEN_KEY)}) !== null`,
          undefined,
          WAIT,
        )
        // Planted from a page of the shop's origin that runs no script: the first page's own calls, still
        // under way, would meet the planted token there, hear 401, store a new guest and say so on that
        // page, and the page loaded next would find nothing to recover from.
        await page.goto('/base.css')
        const planted = mint()
        await page.evaluate(`localStorage.setItem(${JSON.stringify(TOKEN_KEY)}, ${JSON.stringify(planted)})`)
        // The shop finds out on its first call, and says so in a toast that goes away by itself a few
        // seconds later: watch for it from the navigation on.
        const toast = page.getByRole('status').getByText('Your session ended: you continue as a new guest')
        const toastShown = toast.first().waitFor(WAIT)
        await page.goto('/')
        await toastShown
        // It takes no clicks.
        expect(
          await toast
            .first()
            .evaluate((el) => el.ownerDocument.defaultView!.getComputedStyle(el).pointerEvents),
        ).toBe('none')
        await expectPageShape(page, 'Stampede shop')
        const { button } = await firstAddableProduct(page)
        await button.click()
        await cartButton(page, 1).waitFor(WAIT)
        await toast.first().waitFor({ ...WAIT, state: 'detached' })
        expect(await page.getByText('Internal server error').count()).toBe(0)
        expect(await page.evaluate(`localStorage.getItem(${JSON.stringify(TOKEN_KEY)})`)).not.toBe(planted)
      })
    })
  }
})
