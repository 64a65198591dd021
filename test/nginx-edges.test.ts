import { createSigner } from 'fast-jwt'
import type { FastifyInstance } from 'fastify'
import { statSync } from 'node:fs'
import { connect } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { nginxLimitsFromEnv, type NginxSetup } from '../scripts/stack/nginx.js'
import { jwtSecretFile } from '../scripts/stack/secrets.js'
import { TEST_JWT_SECRET } from '../src/config.js'
import { buildTestApp, fillCart, newAdmin, newCustomer, newProduct, newSale } from './support/app.js'
import { startOwnNginx } from './support/own-nginx.js'
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
    // Written, not ended: nginx reads a half-closed connection as a client that gave up (499, no answer).
    // Every request here says `Connection: close` or is refused, so the server closes when it has answered.
    const socket = connect(Number(port), hostname, () => socket.write(request))
    socket.setTimeout(15_000, () => socket.destroy())
    let data = ''
    socket.setEncoding('utf8').on('data', (chunk: string) => (data += chunk))
    socket.on('error', reject)
    socket.on('close', () => {
      const [head = '', body = ''] = data.split('\r\n\r\n')
      resolve({ status: Number(head.split(' ')[1]), headers: head.toLowerCase(), body })
    })
  })
}

/** The values of one header in a raw answer's head (lower case), as often as it was sent. */
const headerValues = (head: string, name: string) =>
  head
    .split('\r\n')
    .filter((line) => line.startsWith(`${name}:`))
    .map((line) => line.slice(name.length + 1).trim())

/** A GET with `count` extra header lines of `size` bytes each: many lines, each under nginx's line limit. */
const withHeaders = (path: string, count: number, size: number) =>
  `GET ${path} HTTP/1.1\r\nHost: stampede\r\n${Array.from({ length: count }, (_, i) => `X-Pad-${i}: ${'a'.repeat(size)}\r\n`).join('')}Connection: close\r\n\r\n`

/**
 * An answer nginx made itself: the API's JSON with this status and code, labelled application/json, each
 * security header once, Retry-After on 429 and 503 only.
 */
function expectNginxJson(
  answer: { status: number; headers: string; body: string },
  status: number,
  code: string,
  what: string,
) {
  expect(answer.status, `${what}: ${answer.headers}`).toBe(status)
  expect(headerValues(answer.headers, 'content-type'), what).toEqual(['application/json'])
  expect(JSON.parse(answer.body), what).toEqual({ code, message: expect.any(String) })
  for (const name of SECURITY_HEADERS)
    expect(headerValues(answer.headers, name), `${what}: ${name}`).toHaveLength(1)
  expect(headerValues(answer.headers, 'retry-after'), what).toEqual(
    status === 429 || status === 503 ? ['1'] : [],
  )
}

/**
 * Requests each of which nginx refuses itself, with the status and code it answers. The statuses nginx
 * cannot be made to answer from outside in this configuration (408: a slow client is disconnected;
 * 411; 495-497 without TLS; 500) are checked in the configuration by test/unit/nginx-conf.test.ts.
 */
const REFUSED_BY_NGINX: [string, string, number, string][] = [
  ['no Host header', 'GET /api/products HTTP/1.1\r\nConnection: close\r\n\r\n', 400, 'BAD_REQUEST'],
  [
    'HTTP/2.0 on the request line',
    'GET / HTTP/2.0\r\nHost: stampede\r\nConnection: close\r\n\r\n',
    505,
    'HTTP_VERSION_NOT_SUPPORTED',
  ],
  [
    'HTTP/9.9 on the request line',
    'GET / HTTP/9.9\r\nHost: stampede\r\nConnection: close\r\n\r\n',
    505,
    'HTTP_VERSION_NOT_SUPPORTED',
  ],
  [
    'Transfer-Encoding: xchunked',
    'POST /api/checkout HTTP/1.1\r\nHost: stampede\r\nTransfer-Encoding: xchunked\r\nConnection: close\r\n\r\n',
    501,
    'NOT_IMPLEMENTED',
  ],
  [
    'a 6,000-character URI',
    `GET /docs/static/index.html?${'x'.repeat(6000)} HTTP/1.1\r\nHost: stampede\r\nConnection: close\r\n\r\n`,
    414,
    'URI_TOO_LONG',
  ],
  ['21 KB of headers in lines of 3 KB', withHeaders('/api/products', 7, 3000), 431, 'HEADERS_TOO_LARGE'],
  ['one header line of 5 KB', withHeaders('/api/products', 1, 5000), 431, 'HEADERS_TOO_LARGE'],
  [
    'a body over 64 KiB',
    `POST /api/checkout HTTP/1.1\r\nHost: stampede\r\nContent-Type: application/json\r\nContent-Length: ${100 * 1024}\r\nConnection: close\r\n\r\n`,
    413,
    'BODY_TOO_LARGE',
  ],
]

describe.runIf(hasNginx)('nginx in front of the test stack', () => {
  const url = stack.nginxUrl!

  it('when anything is asked (storefront, API, errors, docs), then every answer carries the security headers', async () => {
    const paths = [
      '/',
      '/app.js',
      '/base.css',
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

  it("when nginx refuses a request itself, on either server, then the answer is the API's JSON with application/json, each security header once, and Retry-After only on 429 and 503", async () => {
    for (const [server, base] of [
      ['public', url],
      ['admin', stack.nginxAdminUrl!],
    ] as const) {
      for (const [what, request, status, code] of REFUSED_BY_NGINX)
        expectNginxJson(await raw(base, request), status, code, `${server}: ${what}`)
    }
    // The public server's own 404s, 405s and 412s, whatever the URI's extension says.
    const get = (path: string, headers = '') =>
      raw(url, `GET ${path} HTTP/1.1\r\nHost: stampede\r\n${headers}Connection: close\r\n\r\n`)
    for (const path of [
      '/images/nope.png',
      '/api/admin/x.html',
      '/api/admin/sales',
      '/metrics.css',
      '/metrics',
      '/_nginx/error',
    ])
      expectNginxJson(await get(path), 404, 'NOT_FOUND', path)
    expectNginxJson(
      await raw(
        url,
        'POST /index.html HTTP/1.1\r\nHost: stampede\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}',
      ),
      405,
      'METHOD_NOT_ALLOWED',
      'POST /index.html',
    )
    expectNginxJson(
      await get('/index.html', 'If-Unmodified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\n'),
      412,
      'PRECONDITION_FAILED',
      'If-Unmodified-Since',
    )
    // Ranges are not served: an impossible one is ignored, and the file sent whole, its headers once.
    const ranged = await get('/index.html', 'Range: bytes=99999999-\r\n')
    expect(ranged.status).toBe(200)
    for (const name of SECURITY_HEADERS) expect(headerValues(ranged.headers, name), name).toHaveLength(1)
  })

  it('when headers are just under what nginx lets through, then a worker reads them (its own limit is higher): the limits agree', async () => {
    // 11 KB of headers pass nginx (at most 3 x 4 KiB) and Node's 16 KiB, with nginx's own headers added.
    const answer = await raw(url, withHeaders('/api/products', 3, 3800))
    expect(answer.status, answer.body).toBe(200)
    expect(JSON.parse(answer.body)).toHaveProperty('items')
  })

  it.runIf(local)(
    "when an admin's token reads another user's order, then through the admin server it is 200 and through the public server 404, whatever X-Stampede-Edge the client sends (local stack only)",
    async () => {
      const app = await buildTestApp()
      try {
        const admin = await newAdmin(app)
        const customer = await newCustomer(app)
        const productId = await newProduct(app, admin, { stock: 3 })
        await fillCart(app, customer, [{ productId, quantity: 1 }])
        const order = await app.inject({ method: 'POST', url: '/api/checkout', headers: customer.headers })
        expect(order.statusCode, order.body).toBe(201)
        const token = createSigner({ key: stack.jwtSecret })({ sub: admin.id, role: 'admin', guest: true })
        const read = (base: string, edge?: string) =>
          fetch(`${base}/api/orders/${order.json<{ id: string }>().id}`, {
            headers: { authorization: `Bearer ${token}`, ...(edge ? { 'x-stampede-edge': edge } : {}) },
          }).then((r) => r.status)

        expect(await read(stack.nginxAdminUrl!)).toBe(200)
        expect(await read(url)).toBe(404)
        expect(await read(url, 'admin')).toBe(404)
      } finally {
        await app.close()
      }
    },
  )

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
    let nginx: Awaited<ReturnType<typeof startOwnNginx>>
    let url: string
    let app: FastifyInstance

    beforeAll(async () => {
      nginx = await startOwnNginx(stack.workers.map((worker) => new URL(worker).host))
      url = nginx.url
      app = await buildTestApp()
    })
    afterAll(async () => {
      await app?.close()
      await nginx?.stop()
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

describe.runIf(hasNginx && local)(
  'nginx with no worker to answer (local stack only: an nginx of its own)',
  () => {
    let nginx: Awaited<ReturnType<typeof startOwnNginx>>
    let setup: NginxSetup

    beforeAll(async () => {
      // A port nobody listens on: every upstream connection is refused.
      nginx = await startOwnNginx([`127.0.0.1:${await freePort()}`], `127.0.0.1:${await freePort()}`)
      setup = nginx.setup
    })
    afterAll(() => nginx?.stop())

    it('when the workers cannot be reached, then both servers answer 503 SERVICE_UNAVAILABLE JSON with Retry-After', async () => {
      for (const [server, port, path] of [
        ['public', setup.port, '/api/products'],
        ['admin', setup.adminPort, '/api/admin/sales'],
        ['admin metrics', setup.adminPort, '/metrics'],
      ] as const) {
        const answer = await raw(
          `http://127.0.0.1:${port}`,
          `GET ${path} HTTP/1.1\r\nHost: stampede\r\nConnection: close\r\n\r\n`,
        )
        expectNginxJson(answer, 503, 'SERVICE_UNAVAILABLE', server)
      }
    })
  },
)

describe("a worker's own refusals (behind nginx they are rare: nginx refuses these first)", () => {
  let app: FastifyInstance
  let address: string

  beforeAll(async () => {
    app = await buildTestApp()
    address = await app.listen({ host: '127.0.0.1', port: 0 })
  })
  afterAll(async () => {
    await app.close()
  })

  it("when Node or Fastify refuses a request before any route (headers over Node's limit, bytes that are not HTTP, a broken URL), then the answer is the API's JSON", async () => {
    const cases = [
      [withHeaders('/api/products', 7, 3000), 431, 'HEADERS_TOO_LARGE'],
      ['NOT HTTP AT ALL\r\n\r\n', 400, 'BAD_REQUEST'],
      ['GET /api/products/%zz HTTP/1.1\r\nHost: stampede\r\nConnection: close\r\n\r\n', 400, 'BAD_REQUEST'],
      ['GET /% HTTP/1.1\r\nHost: stampede\r\nConnection: close\r\n\r\n', 400, 'BAD_REQUEST'],
    ] as const
    for (const [request, status, code] of cases) {
      const answer = await raw(address, request)
      expect(answer.status, request.slice(0, 40)).toBe(status)
      expect(headerValues(answer.headers, 'content-type')[0]).toContain('application/json')
      expect(JSON.parse(answer.body)).toEqual({ code, message: expect.any(String) })
    }
  })
})

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
