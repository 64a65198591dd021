import { createSigner } from 'fast-jwt'
import type { FastifyInstance } from 'fastify'
import { randomUUID } from 'node:crypto'
import type { Browser, Locator, Page } from 'playwright-core'
import { expect } from 'vitest'
import { buildTestApp, newAdmin, type TestUser } from '../support/app.js'
import { launchBrowser, shopUrl } from '../support/browser.js'

/** Where the shop keeps its token (localStorage), for the tests that plant a rejected one. */
export const TOKEN_KEY = 'stampede.token'

/** Generous: the machine running the suite may be busy; every wait ends as soon as the condition holds. */
export const WAIT = { timeout: 15_000 }

/** A name no other test uses, so a locator by name finds this test's product only. */
export const uniqueName = (what: string): string => `${what} ${randomUUID().slice(0, 8)}`

const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
/** The exact accessible name, as a RegExp (a string name would also match a longer name). */
export const exactly = (text: string): RegExp => new RegExp(`^${escape(text)}$`)

/**
 * Every page of the shop: exactly one <h1> (with `heading` when given), one <main>, and a title.
 * Waits for the heading first: the pages are drawn by the app after it loads.
 */
export async function expectPageShape(page: Page, heading?: string | RegExp): Promise<void> {
  const h1 = page.locator('h1')
  if (heading === undefined) await h1.first().waitFor(WAIT)
  else
    await page
      .getByRole('heading', { level: 1, name: typeof heading === 'string' ? exactly(heading) : heading })
      .waitFor(WAIT)
  expect(await h1.count(), `exactly one <h1> on ${page.url()}`).toBe(1)
  expect(await page.locator('main').count(), `exactly one <main> on ${page.url()}`).toBe(1)
  expect(await page.title(), `a document title on ${page.url()}`).not.toBe('')
}

/** The header's cart button, once its accessible name says `items` ("Cart, 1 item", "Cart, 2 items"). */
export function cartButton(page: Page, items?: number): Locator {
  if (items === undefined) return page.getByRole('button', { name: /^Cart\b/ })
  return page.getByRole('button', { name: new RegExp(`^Cart, ${items} items?\\b`) })
}

/** Waits until `locator` (e.g. a card) shows `text` somewhere inside it. */
export async function waitForTextIn(locator: Locator, text: string | RegExp): Promise<void> {
  await locator.getByText(text).first().waitFor(WAIT)
}

/** The first catalogue product a shopper can add to the cart: its card and its name. */
export async function firstAddableProduct(page: Page): Promise<{ button: Locator; name: string }> {
  const button = page.getByRole('button', { name: /^Add .+ to cart$/ }).and(page.locator(':enabled'))
  await button.first().waitFor(WAIT)
  // The accessible name as a screen reader gets it (aria-label, labelledby or text alike).
  const snapshot = await button.first().ariaSnapshot()
  const name = /button "Add (.+) to cart"/.exec(snapshot)?.[1]
  if (!name) throw new Error(`cannot read the product name from ${snapshot}`)
  return { button: page.getByRole('button', { name: exactly(`Add ${name} to cart`) }).first(), name }
}

/** A purchase through nginx, as another shopper's browser would send it; returns the status. */
export async function buyThroughNginx(saleId: number, token: string): Promise<number> {
  const response = await fetch(`${shopUrl()}/api/sales/${saleId}/purchase`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${token}`,
      'content-type': 'application/json',
      'idempotency-key': randomUUID(),
    },
    body: JSON.stringify({ quantity: 1 }),
  })
  await response.arrayBuffer()
  return response.status
}

/** A customer's token with well-formed claims, valid for an hour, signed with `secret`. */
export function signToken(secret: string, sub: string = randomUUID()): string {
  return createSigner({ key: secret, expiresIn: 3600_000 })({ sub, role: 'customer', guest: true })
}

/** The product a sale sells. */
export async function productOfSale(app: FastifyInstance, saleId: number): Promise<number> {
  const response = await app.inject({ url: `/api/sales/${saleId}` })
  return response.json<{ productId: number }>().productId
}

/**
 * The toasts on screen that overlap a button of the page's <main>, as "toast text / button name" lines.
 * Toasts sit in a corner and must never hide the buttons a shopper is about to press.
 */
export async function toastsOverButtons(page: Page): Promise<string[]> {
  const toasts = page.getByRole('status').locator(':scope > *')
  await toasts.first().waitFor(WAIT)
  const boxes = async (locator: Locator) => {
    const found: { text: string; box: { x: number; y: number; width: number; height: number } }[] = []
    for (const one of await locator.all()) {
      const box = await one.boundingBox()
      if (box && box.width > 0 && (await one.isVisible()))
        found.push({ text: (await one.innerText()).trim(), box })
    }
    return found
  }
  const overlaps = (
    a: { x: number; y: number; width: number; height: number },
    b: { x: number; y: number; width: number; height: number },
  ) => a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height
  const lines: string[] = []
  const buttons = await boxes(page.locator('main').getByRole('button'))
  for (const toast of await boxes(toasts))
    for (const button of buttons)
      if (overlaps(toast.box, button.box)) lines.push(`${toast.text} / ${button.text}`)
  return lines
}

/** What every browser test file starts with: Chromium, an app for the admin API, and an admin. */
export async function openBrowserSuite(): Promise<{
  browser: Browser
  app: FastifyInstance
  admin: TestUser
}> {
  const browser = await launchBrowser()
  const app = await buildTestApp()
  return { browser, app, admin: await newAdmin(app) }
}

/** Closes what openBrowserSuite opened; either may be missing when the opening failed half-way. */
export async function closeBrowserSuite(browser?: Browser, app?: FastifyInstance): Promise<void> {
  await browser?.close()
  await app?.close()
}
