import { AxeBuilder } from '@axe-core/playwright'
import { existsSync, mkdirSync } from 'node:fs'
import path from 'node:path'
import {
  chromium,
  type Browser,
  type BrowserContext,
  type ConsoleMessage,
  type Page,
  type Request,
} from 'playwright-core'
import { describe, expect, it } from 'vitest'
import { REPO_ROOT } from '../../scripts/stack/paths.js'
import { testStack } from './stack-env.js'

/**
 * The browser tests' harness: Debian's chromium driven by playwright-core, against the shop behind the
 * test stack's nginx. Each test gets a fresh browser context (its own localStorage, so its own guest),
 * and every page of it reports console errors, uncaught exceptions, failed requests and 5xx answers; the
 * test fails on any the test did not say it expects. Screenshots go to .stack/screenshots/ (git-ignored).
 */

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
export const chromiumInstalled = existsSync(CHROMIUM_PATH)

// Without the background-networking flags chromium keeps calling Google's services, which on a closed
// network means a stream of failed connections; QUIC is off because nginx speaks HTTP/1.1 here.
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]

export const VIEWPORTS = {
  desktop: { width: 1280, height: 800 },
  mobile: { width: 390, height: 844 },
} as const
export type ViewportName = keyof typeof VIEWPORTS

export const SCREENSHOT_DIR = path.join(REPO_ROOT, '.stack', 'screenshots')

/** The shop's address: the test stack's nginx (local or in containers). */
export function shopUrl(): string {
  const url = testStack().nginxUrl
  if (!url) throw new Error('the browser tests need the test stack with the app and nginx (STACK_TEST_APP=1)')
  return url
}

/**
 * `describe` for browser tests. Without chromium they are skipped with a message saying so, except in CI
 * (CI=true), where a missing browser is a failure, not a silent skip.
 */
export function describeBrowser(name: string, body: () => void): void {
  if (chromiumInstalled) {
    // A page drawn by a browser on a busy machine: each test waits for conditions, not for time.
    describe(name, { timeout: 60_000 }, body)
    return
  }
  if (process.env.CI === 'true') {
    describe(name, () => {
      it('has chromium to run in', () => {
        throw new Error(
          `${CHROMIUM_PATH} is missing: install Debian's chromium (apt-get install -y chromium)`,
        )
      })
    })
    return
  }
  console.warn(
    `[browser tests] skipped "${name}": ${CHROMIUM_PATH} is missing (apt-get install -y chromium, or set CHROMIUM_PATH)`,
  )
  describe.skip(name, body)
}

export function launchBrowser(): Promise<Browser> {
  // playwright turns the back/forward cache off by default; a shopper's browser has it on, and the shop
  // must survive it (a page restored from it holds its old live streams), so it is on here.
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    args: CHROMIUM_ARGS,
    ignoreDefaultArgs: ['--disable-back-forward-cache'],
  })
}

/**
 * A fresh context (a new visitor) on the shop at one viewport, collecting what its pages report.
 * `assertClean()` fails on anything that was not `allow()`ed; `asVisitor` below calls it for a test.
 */
export class ShopSession {
  readonly problems: string[] = []
  private readonly allowed: RegExp[] = []
  private closed = false

  private constructor(
    readonly context: BrowserContext,
    readonly baseUrl: string,
    readonly viewport: ViewportName,
  ) {
    context.on('page', (page) => this.watch(page))
  }

  static async open(browser: Browser, viewport: ViewportName = 'desktop'): Promise<ShopSession> {
    const baseUrl = shopUrl()
    const context = await browser.newContext({ baseURL: baseUrl, viewport: VIEWPORTS[viewport] })
    return new ShopSession(context, baseUrl, viewport)
  }

  /** A new tab of this visitor (same localStorage), already at `path` and loaded. */
  async newPage(pathname = '/'): Promise<Page> {
    const page = await this.context.newPage()
    await page.goto(pathname)
    return page
  }

  /**
   * Says a problem line matching `pattern` is expected in this test, e.g. the browser's own
   * "Failed to load resource: ... 401" line when a test plants a rejected token on purpose.
   */
  allow(pattern: RegExp): void {
    this.allowed.push(pattern)
  }

  private record(line: string): void {
    if (this.closed) return
    if (this.allowed.some((pattern) => pattern.test(line))) return
    this.problems.push(line)
  }

  private watch(page: Page): void {
    const origin = new URL(this.baseUrl).origin
    // Product pictures may live on any https host (the Content-Security-Policy allows it, and the shop
    // shows a lettered tile when one fails): such a picture that does not load is the catalogue's
    // data, not a fault of the shop. Pictures of the shop's own origin stay strict.
    const foreignImages = new Set<string>()
    page.on('request', (request) => {
      const url = request.url()
      if (/^(data|blob):/.test(url) || new URL(url).origin === origin) return
      if (request.resourceType() === 'image') foreignImages.add(url)
      // No runtime CDN: scripts, styles, fonts and API calls all come from the shop's own origin.
      else this.record(`request to another origin: ${request.method()} ${url}`)
    })
    page.on('console', (message: ConsoleMessage) => {
      if (message.type() !== 'error') return
      const where = message.location().url
      if (foreignImages.has(where) && message.text().startsWith('Failed to load resource')) return
      this.record(`console error on ${page.url()}: ${message.text()}${where ? ` (${where})` : ''}`)
    })
    page.on('pageerror', (error) =>
      this.record(`uncaught exception on ${page.url()}: ${error.stack ?? error}`),
    )
    page.on('requestfailed', (request: Request) => {
      const failure = request.failure()?.errorText ?? 'failed'
      // A request the page itself gave up (a navigation away, an EventSource closed on pagehide, an
      // AbortController) is the page's own decision, not a failure of the shop.
      if (failure === 'net::ERR_ABORTED' || foreignImages.has(request.url())) return
      this.record(`request failed: ${request.method()} ${request.url()}: ${failure}`)
    })
    page.on('response', (response) => {
      if (response.status() >= 500)
        this.record(
          `server error: ${response.request().method()} ${response.url()} answered ${response.status()}`,
        )
    })
  }

  /** Fails the test with every unexpected problem the pages reported so far. */
  assertClean(): void {
    expect(this.problems, 'console errors, page errors or failed requests').toEqual([])
  }

  async close(): Promise<void> {
    this.closed = true
    await this.context.close()
  }
}

/**
 * Runs `body` as a new visitor at one viewport and closes the context after it. The test fails on any
 * unexpected problem the pages reported, and a failing test lists them with its own error.
 */
export async function asVisitor<T>(
  browser: Browser,
  viewport: ViewportName,
  body: (shop: ShopSession) => Promise<T>,
): Promise<T> {
  const shop = await ShopSession.open(browser, viewport)
  try {
    const result = await body(shop)
    shop.assertClean()
    return result
  } catch (error) {
    if (shop.problems.length > 0 && error instanceof Error)
      error.message += `\nThe pages also reported:\n${shop.problems.join('\n')}`
    throw error
  } finally {
    await shop.close()
  }
}

/** A full-page screenshot into .stack/screenshots/<name>-<viewport>.png. */
export async function screenshot(page: Page, name: string, viewport: ViewportName): Promise<string> {
  mkdirSync(SCREENSHOT_DIR, { recursive: true })
  const file = path.join(SCREENSHOT_DIR, `${name}-${viewport}.png`)
  await page.screenshot({ path: file, fullPage: true })
  return file
}

/**
 * Runs axe-core on the page as it is now and returns its serious and critical violations, readably: each
 * rule with the elements it found and axe's own summary of the fix.
 */
export async function seriousA11yViolations(page: Page): Promise<string[]> {
  const results = await new AxeBuilder({ page }).analyze()
  return results.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) =>
      [
        `${v.impact} ${v.id}: ${v.help} (${v.helpUrl})`,
        ...v.nodes.map((n) => `  at ${n.target.join(' ')}: ${n.failureSummary?.replace(/\n/g, ' ')}`),
      ].join('\n'),
    )
}

/** Fails on any serious or critical axe-core violation of the page as it is now. */
export async function expectNoSeriousA11yViolations(page: Page, what: string): Promise<void> {
  expect(await seriousA11yViolations(page), `accessibility violations on ${what} (${page.url()})`).toEqual([])
}
