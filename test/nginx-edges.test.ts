import { createSigner } from 'fast-jwt'
import type { FastifyInstance } from 'fastify'
import { mkdtempSync, rmSync, statSync } from 'node:fs'
import { connect } from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ensureNginx, nginxLimitsFromEnv, stopNginx, type NginxSetup } from '../scripts/stack/nginx.js'
import { jwtSecretFile } from '../scripts/stack/secrets.js'
import { TEST_JWT_SECRET } from '../src/config.js'
import { buildTestApp, newAdmin, newCustomer, newSale } from './support/app.js'
import { freePort } from './support/ports.js'
import { testStack } from './support/stack-env.js'
import { openStream } from './support/streams.js'

// The edges a client meets before the app: nginx's own answers, the headers on every answer, the limits
// per address, and the stack's own JWT secret. Through the test stack's nginx, and through an nginx of
// our own from the committed nginx.conf with its default limits, in front of the test stack's workers.

const stack = testStack()
const hasNginx = stack.nginxUrl !== undefined
// An nginx of the test's own in front of the workers, and the stack folder's secret file: local stack only.
const local = stack.options !== undefined && stack.workers.length > 0

const SECURITY_HEADERS = [
  'x-content-type-options',
  'x-frame-options',
  'referrer-policy',
  'content-security-policy',
]

function expectSecurityHeaders(response: Response, what: string) {
  for (const name of SECURITY_HEADERS) expect(response.headers.get(name), `${what}: ${name}`).toBeTruthy()
  expect(response.headers.get('x-content-type-options')).toBe('nosniff')
  expect(response.headers.get('content-security-policy')).toContain("frame-ancestors 'none'")
}

/** Sends raw bytes and returns the status line and body: for requests fetch refuses to make. */
function raw(url: string, request: string): Promise<{ status: number; headers: string; body: string }> {
  const { hostname, port } = new URL(url)
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => socket.end(request))
    let data = ''
    socket.setEncoding('utf8').on('data', (chunk: string) => (data += chunk))
    socket.on('error', reject)
    socket.on('close', () => {
      const [head = '', body = ''] = data.split('\r\n\r\n')
      resolve({ status: Number(head.split(' ')[1]), headers: head.toLowerCase(), body })
    })
  })
}

describe.runIf(hasNginx)('nginx in front of the test stack', () => {
  const url = stack.nginxUrl!

  it('when anything is asked (storefront, API, errors, docs), then every answer carries the security headers', async () => {
    const paths = [
      '/',
      '/app.js',
      '/styles.css',
      '/api/products',
      '/api/products/999999999',
      '/api/admin/sales',
      '/docs',
    ]
    for (const p of paths) expectSecurityHeaders(await fetch(`${url}${p}`), p)
    // The storefront loads nothing from elsewhere, and no inline script or style: a strict policy holds.
    const csp = (await fetch(`${url}/`)).headers.get('content-security-policy')!
    expect(csp).toContain("default-src 'self'")
    expect(csp).not.toContain('unsafe-inline')
    const html = await (await fetch(`${url}/`)).text()
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>|<style|\sstyle=|\son[a-z]+=/i)
  })

  it('when nginx itself refuses a request (413, 405, 414, 400), then the answer is the API JSON {code, message}', async () => {
    const tooLarge = await fetch(`${url}/api/checkout`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ padding: 'x'.repeat(100 * 1024) }),
    })
    const notAllowed = await fetch(`${url}/index.html`, { method: 'POST', body: '{}' })
    const tooLong = await fetch(`${url}/api/products?cursor=${'x'.repeat(10_000)}`)
    for (const [response, status, code] of [
      [tooLarge, 413, 'BODY_TOO_LARGE'],
      [notAllowed, 405, 'METHOD_NOT_ALLOWED'],
      [tooLong, 414, 'URI_TOO_LONG'],
    ] as const) {
      expect(response.status).toBe(status)
      expect(response.headers.get('content-type')).toContain('application/json')
      expect(await response.json()).toEqual({ code, message: expect.any(String) })
      expectSecurityHeaders(response, String(status))
    }
    const badRequest = await raw(url, 'GET /api/products HTTP/1.1\r\nConnection: close\r\n\r\n')
    expect(badRequest.status).toBe(400)
    expect(JSON.parse(badRequest.body)).toEqual({ code: 'BAD_REQUEST', message: expect.any(String) })
  })

  it.runIf(local)(
    "when a token is signed with the built-in test secret, then the stack's workers refuse it; its own secret (kept 0600 in the stack folder) works (local stack only)",
    async () => {
      const file = jwtSecretFile(stack.options!.dir)
      expect(statSync(file).mode & 0o777).toBe(0o600)
      expect(stack.jwtSecret).not.toBe(TEST_JWT_SECRET)
      const app = await buildTestApp()
      try {
        const customer = await newCustomer(app)
        const claims = { sub: customer.id, role: 'customer', guest: true }
        const forged = createSigner({ key: TEST_JWT_SECRET })(claims)
        const own = createSigner({ key: stack.jwtSecret })(claims)
        const answer = (token: string) =>
          fetch(`${url}/api/cart`, { headers: { authorization: `Bearer ${token}` } }).then((r) => r.status)
        expect(await answer(forged)).toBe(401)
        expect(await answer(own)).toBe(200)
      } finally {
        await app.close()
      }
    },
  )
})

describe.runIf(hasNginx && local)(
  "nginx's default limits per client address (local stack only: an nginx of its own)",
  () => {
    let setup: NginxSetup
    let dir: string
    let url: string
    let app: FastifyInstance

    beforeAll(async () => {
      dir = mkdtempSync(path.join(os.tmpdir(), 'stampede-nginx-limits-'))
      setup = {
        stackDir: dir,
        port: await freePort(),
        adminPort: await freePort(),
        upstreams: stack.workers.map((worker) => new URL(worker).host),
        jobsMetrics: '127.0.0.1:9',
        limits: nginxLimitsFromEnv({}),
      }
      await ensureNginx(setup, () => {})
      url = `http://127.0.0.1:${setup.port}`
      app = await buildTestApp()
    })
    afterAll(async () => {
      await app?.close()
      if (setup) await stopNginx(setup, () => {})
      rmSync(dir, { recursive: true, force: true })
    })

    it('when one address asks for accounts in a burst, then past NGINX_SIGNUP_BURST they are 429 JSON with Retry-After', async () => {
      const { signupBurst } = nginxLimitsFromEnv({})
      const answers = []
      for (let i = 0; i < signupBurst + 10; i++)
        answers.push(await fetch(`${url}/api/auth/guest`, { method: 'POST' }))
      const statuses = answers.map((r) => r.status)
      expect(statuses.filter((s) => s === 201).length).toBeLessThanOrEqual(signupBurst + 1)
      const refused = answers.find((r) => r.status === 429)!
      expect(refused).toBeDefined()
      expect(await refused.json()).toMatchObject({ code: 'RATE_LIMITED' })
      expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(1)
      expectSecurityHeaders(refused, '429')
    })

    it('when one address opens more event streams than NGINX_STREAMS_PER_ADDRESS, then the next is 429 JSON with Retry-After', async () => {
      const { streamsPerAddress } = nginxLimitsFromEnv({})
      const saleId = await newSale(app, await newAdmin(app), { units: 1 })
      const open = () => openStream(`${url}/api/sales/${saleId}/events`)
      const streams = []
      for (let i = 0; i < streamsPerAddress; i++) streams.push(await open())
      try {
        expect(streams.every((s) => s.status === 200)).toBe(true)
        const refused = await open()
        expect(refused.status).toBe(429)
        expect(JSON.parse(await refused.body)).toMatchObject({ code: 'RATE_LIMITED' })
        expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1)
      } finally {
        for (const stream of streams) stream.close()
      }
    })
  },
)

describe('the X-Worker header', () => {
  it('when DEBUG_WORKER_HEADER is not set, then answers do not say which worker answered; with it, they do', async () => {
    const quiet = await buildTestApp()
    const chatty = await buildTestApp({ DEBUG_WORKER_HEADER: '1' })
    try {
      expect((await quiet.inject('/health/live')).headers['x-worker']).toBeUndefined()
      expect((await chatty.inject('/health/live')).headers['x-worker']).toBe('api-0')
    } finally {
      await Promise.all([quiet.close(), chatty.close()])
    }
  })
})
