import { randomUUID } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import type { Browser, Page } from 'playwright-core'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { newCustomer, newProduct, newSale, type TestUser } from '../support/app.js'
import { asVisitor, describeBrowser, shopUrl } from '../support/browser.js'
import {
  WAIT,
  buyThroughNginx,
  cartButton,
  exactly,
  expectPageShape,
  firstAddableProduct,
  uniqueName,
  waitForTextIn,
  closeBrowserSuite,
  openBrowserSuite,
} from './shop-helpers.js'

// The storefront's pages as a shopper uses them: the home page with its sale cards and catalogue, a
// product page opened by its URL, search and categories, and the cart drawer.

/** The header every page has, for a guest. */
async function expectGuestHeader(page: Page): Promise<void> {
  // The brand link to / is named "Stampede" (a tagline may follow, as a word of its own).
  const brand = await page.locator('header a[href="/"]').first().ariaSnapshot(WAIT)
  expect(brand, 'the brand link to /').toMatch(/^- link "Stampede(\W[^"]*)?"/)
  const search = page.getByRole('search')
  await search.getByLabel('Search products').waitFor(WAIT)
  await search.getByRole('button', { name: exactly('Search') }).waitFor(WAIT)
  await page.getByRole('navigation', { name: 'Categories' }).waitFor(WAIT)
  expect(await page.getByRole('link', { name: exactly('Sign in') }).getAttribute('href', WAIT)).toBe(
    '/signin',
  )
  expect(await page.getByRole('link', { name: exactly('Orders') }).getAttribute('href', WAIT)).toBe('/orders')
  await cartButton(page).waitFor(WAIT)
}

describeBrowser('the shop in a browser', () => {
  let browser: Browser
  let app: FastifyInstance
  let admin: TestUser

  beforeAll(async () => ({ browser, app, admin } = await openBrowserSuite()))
  afterAll(() => closeBrowserSuite(browser, app))

  it('when a guest opens the home page, then it shows every live and upcoming sale with live numbers and the catalogue', async () => {
    const liveName = uniqueName('Home live')
    const upcomingName = uniqueName('Home upcoming')
    const liveSale = await newSale(app, admin, { units: 5, perUserLimit: 2, productName: liveName })
    const upcomingSale = await newSale(app, admin, {
      units: 3,
      startsInMs: 3600_000,
      productName: upcomingName,
    })

    await asVisitor(browser, 'desktop', async (shop) => {
      const page = await shop.newPage('/')
      await expectPageShape(page, 'Stampede shop')
      await expectGuestHeader(page)
      await page.getByRole('heading', { level: 2, name: 'Flash sales' }).waitFor(WAIT)
      await page.getByRole('heading', { level: 2, name: 'Catalogue' }).waitFor(WAIT)

      const live = page.getByRole('article', { name: exactly(liveName) })
      await waitForTextIn(live, '5 of 5 left')
      await waitForTextIn(live, 'You hold 0 of 2')
      expect(await live.locator(`a[href="/sales/${liveSale}"]`).count()).toBe(1)
      expect(await live.getByRole('button', { name: exactly(`Buy ${liveName} now`) }).isEnabled()).toBe(true)

      // Twelve cards at first, then twelve more per "More flash sales". Upcoming sales come after every
      // live one, so on a test database that other tests filled with live sales it takes a few clicks.
      const cards = page.locator('.grid.sales > article')
      expect(await cards.count()).toBeLessThanOrEqual(12)
      const upcoming = page.getByRole('article', { name: exactly(upcomingName) })
      const more = page.getByRole('button', { name: exactly('More flash sales') })
      for (let clicks = 0; (await upcoming.count()) === 0; clicks++) {
        expect(clicks, 'More flash sales clicks before the upcoming sale shows').toBeLessThan(50)
        const before = await cards.count()
        await more.click(WAIT)
        expect(await cards.count()).toBeGreaterThan(before)
      }
      await waitForTextIn(upcoming, '3 of 3 left')
      await waitForTextIn(upcoming, 'Upcoming')
      expect(await upcoming.locator(`a[href="/sales/${upcomingSale}"]`).count()).toBe(1)
      expect(
        await upcoming.getByRole('button', { name: exactly(`Buy ${upcomingName} now`) }).isDisabled(),
      ).toBe(true)

      // Another shopper buys a unit: the card follows within a moment, without a reload.
      expect(await buyThroughNginx(liveSale, (await newCustomer(app)).token)).toBe(201)
      await waitForTextIn(live, '4 of 5 left')

      // A catalogue card: a link named by the product to its page, and its own Add button.
      const { button, name } = await firstAddableProduct(page)
      const card = page.getByRole('article').filter({ has: button })
      expect(await card.getByRole('link', { name: exactly(name) }).getAttribute('href')).toMatch(
        /^\/products\/\d+$/,
      )
      await button.click()
      await cartButton(page, 1).waitFor(WAIT)
      await page
        .locator('[aria-live="polite"]', { hasText: 'Cart: 1 item' })
        .first()
        .waitFor({
          ...WAIT,
          state: 'attached',
        })
    })
  })

  it('when a product page is opened by its URL and reloaded, then it shows the same product, and an unknown id says so', async () => {
    const name = uniqueName('Deep link kettle')
    const description = `A kettle that boils ${name.slice(-8)} litres before the sale ends.`
    const productId = await newProduct(app, admin, { name, description, priceCents: 1234, stock: 7 })

    await asVisitor(browser, 'desktop', async (shop) => {
      const page = await shop.newPage(`/products/${productId}`)
      await expectPageShape(page, name)
      await page.getByText(description).waitFor(WAIT)
      await page.getByText('$12.34').first().waitFor(WAIT)
      await page.reload()
      await expectPageShape(page, name)
      await page.getByText(description).waitFor(WAIT)
      expect(new URL(page.url()).pathname).toBe(`/products/${productId}`)

      await page.getByRole('button', { name: exactly(`Add ${name} to cart`) }).click()
      await cartButton(page, 1).waitFor(WAIT)

      // The API answers 404 for the unknown product; the browser logs that answer itself.
      shop.allow(/Failed to load resource: the server responded with a status of 404/)
      await page.goto('/products/2000000000')
      await expectPageShape(page, 'Product not found')
    })
  })

  it('when a shopper searches or picks a category, then the API filters the products and the results link to product pages', async () => {
    const name = uniqueName('Quokka lamp')
    const word = name.split(' ').at(-1)!
    const productId = await newProduct(app, admin, {
      name,
      description: 'A lamp for searching.',
      priceCents: 999,
      stock: 3,
    })
    const categories = await fetch(`${shopUrl()}/api/categories`)
    expect(categories.status, 'GET /api/categories').toBe(200)
    const listed = (await categories.json()) as
      | { slug: string; name: string; productCount: number }[]
      | { items: { slug: string; name: string; productCount: number }[] }
    const all = Array.isArray(listed) ? listed : listed.items
    const category = all.find((c) => c.productCount > 0)
    expect(category, 'a category with products').toBeDefined()

    await asVisitor(browser, 'desktop', async (shop) => {
      const page = await shop.newPage('/')
      await expectPageShape(page, 'Stampede shop')
      const search = page.getByRole('search')
      await search.getByLabel('Search products').fill(word)
      const asked = page.waitForRequest(
        (r) => /\/api\/products\?/.test(r.url()) && r.url().includes(word),
        WAIT,
      )
      await search.getByRole('button', { name: exactly('Search') }).click()
      await asked
      await expectPageShape(page, 'Search results')
      expect(new URL(page.url()).searchParams.get('q')).toBe(word)
      const link = page.getByRole('link', { name: exactly(name) })
      await link.waitFor(WAIT)
      await link.click()
      await expectPageShape(page, name)
      expect(new URL(page.url()).pathname).toBe(`/products/${productId}`)

      await page.goto(`/search?q=${encodeURIComponent('no-such-product-' + word)}`)
      await expectPageShape(page, 'Search results')
      await page.getByText('No products match').waitFor(WAIT)

      const categoryAsked = page.waitForRequest(
        (r) => /\/api\/products\?/.test(r.url()) && r.url().includes(`category=${category!.slug}`),
        WAIT,
      )
      await page
        .getByRole('navigation', { name: 'Categories' })
        .getByRole('link', { name: category!.name })
        .first()
        .click()
      await categoryAsked
      await expectPageShape(page, 'Search results')
      expect(new URL(page.url()).searchParams.get('category')).toBe(category!.slug)
      const fromApi = await fetch(`${shopUrl()}/api/products?category=${encodeURIComponent(category!.slug)}`)
      const first = ((await fromApi.json()) as { items: { name: string }[] }).items[0]!
      await page
        .getByRole('link', { name: exactly(first.name) })
        .first()
        .waitFor(WAIT)
    })
  })

  it('when a picture fails to load and the texts are long, then a lettered tile stands in and nothing leaves the card', async () => {
    const name = `Xylophone ${'with an extraordinarily long name '.repeat(4)}${randomUUID().slice(0, 8)}`
    const productId = await newProduct(app, admin, {
      name,
      description: 'Its picture is missing on purpose.',
      priceCents: 100_000_000,
      stock: 1_000_000,
      imageUrl: `/images/missing-${randomUUID()}.svg`,
    })
    const foreignName = uniqueName('Zither')
    const foreignId = await newProduct(app, admin, {
      name: foreignName,
      description: 'Its picture is on a host that does not exist.',
      priceCents: 5000,
      stock: 3,
      imageUrl: `https://pictures.invalid/${randomUUID()}.png`,
    })

    await asVisitor(browser, 'mobile', async (shop) => {
      shop.allow(/Failed to load resource: the server responded with a status of 404 .*\/images\/missing-/)
      const page = await shop.newPage(`/search?q=${encodeURIComponent(name.split(' ').at(-1)!)}`)
      await expectPageShape(page, 'Search results')
      const card = page.getByRole('article').filter({ has: page.getByRole('link', { name: exactly(name) }) })
      await card.getByText('X', { exact: true }).waitFor(WAIT)
      await waitForTextIn(card, '$1,000,000.00')
      const outside = await card.evaluate((el) => {
        const box = el.getBoundingClientRect()
        return [...el.querySelectorAll('*')]
          .filter((child) => {
            const r = child.getBoundingClientRect()
            return r.width > 0 && (r.right > box.right + 1 || r.left < box.left - 1)
          })
          .map((child) => `<${child.tagName.toLowerCase()}> ${(child.textContent ?? '').slice(0, 40)}`)
      })
      expect(outside, 'elements wider than their card').toEqual([])

      await page.goto(`/products/${productId}`)
      await expectPageShape(page, name)
      await page.locator('main').getByText('X', { exact: true }).first().waitFor(WAIT)
      const broken = await page
        .locator('main img')
        .evaluateAll(
          (images) =>
            images.filter(
              (image) =>
                (image as { complete: boolean; naturalWidth: number }).complete &&
                (image as { naturalWidth: number }).naturalWidth === 0,
            ).length,
        )
      expect(broken, 'broken images left on the page').toBe(0)

      // A picture on another host that cannot be reached: the same tile.
      await page.goto(`/products/${foreignId}`)
      await expectPageShape(page, foreignName)
      await page.locator('main').getByText('Z', { exact: true }).first().waitFor(WAIT)
    })
  })

  it('when the cart opens, then it is a modal dialog that takes focus, keeps it, and gives it back on Esc and Close cart', async () => {
    await asVisitor(browser, 'desktop', async (shop) => {
      const page = await shop.newPage('/')
      const { button, name } = await firstAddableProduct(page)
      await button.click()
      const cart = cartButton(page, 1)
      await cart.waitFor(WAIT)

      const dialog = page.getByRole('dialog', { name: 'Your cart' })
      const focusInDialog = () => dialog.evaluate((el) => el.contains(el.ownerDocument.activeElement))
      const focusOnCartButton = () => cart.evaluate((el) => el === el.ownerDocument.activeElement)

      await cart.click()
      await dialog.waitFor(WAIT)
      expect(await dialog.getAttribute('aria-modal')).toBe('true')
      await expect.poll(focusInDialog, WAIT).toBe(true)
      for (let i = 0; i < 12; i++) {
        await page.keyboard.press(i % 3 === 2 ? 'Shift+Tab' : 'Tab')
        expect(await focusInDialog(), `focus stays in the cart after ${i + 1} Tab presses`).toBe(true)
      }
      await dialog.getByText('Payment is simulated: no card is charged.').waitFor(WAIT)
      await dialog.getByRole('button', { name: exactly('Checkout') }).waitFor(WAIT)

      await dialog.getByRole('button', { name: exactly(`Add one ${name}`) }).click()
      await cartButton(page, 2).waitFor(WAIT)
      await dialog.getByRole('button', { name: exactly(`Remove one ${name}`) }).click()
      await cartButton(page, 1).waitFor(WAIT)

      await page.keyboard.press('Escape')
      await dialog.waitFor({ ...WAIT, state: 'hidden' })
      await expect.poll(focusOnCartButton, WAIT).toBe(true)

      await cart.click()
      await dialog.waitFor(WAIT)
      await dialog.getByRole('button', { name: exactly('Close cart') }).click()
      await dialog.waitFor({ ...WAIT, state: 'hidden' })
      await expect.poll(focusOnCartButton, WAIT).toBe(true)
    })
  })

  it('when Add to cart is double-clicked, then one request is sent, the button is busy meanwhile, and the cart holds one', async () => {
    await asVisitor(browser, 'desktop', async (shop) => {
      const page = await shop.newPage('/')
      const { button } = await firstAddableProduct(page)
      let release!: () => void
      const released = new Promise<void>((resolve) => (release = resolve))
      let writes = 0
      await page.route('**/api/cart/items/**', async (route) => {
        writes++
        await released
        await route.continue()
      })
      await button.dblclick()
      await expect.poll(() => writes, WAIT).toBe(1)
      expect(await button.getAttribute('aria-busy')).toBe('true')
      expect(await button.isDisabled()).toBe(true)
      release()
      await cartButton(page, 1).waitFor(WAIT)
      await expect.poll(() => button.getAttribute('aria-busy'), WAIT).not.toBe('true')
      expect(writes).toBe(1)
      expect(await page.getByText(/changed in another tab/).count()).toBe(0)
    })
  })
})
