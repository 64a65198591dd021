import { Ajv, type ValidateFunction } from 'ajv'
import addFormats from 'ajv-formats'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { get } from 'node:http'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildTestApp, newAdmin, newCustomer, type TestUser } from './support/app.js'

// Every route of the OpenAPI document (generated from the route schemas), public and admin, called with
// values that its schema accepts but nobody would type: bounds, the longest strings, astral characters,
// NUL, SQL and URL tricks, the ids the API has handed out. Nothing here is listed per route: the values
// come from each parameter's and body property's schema. The rules: no answer is a 5xx, a 4xx writes
// nothing, and an integer in a path or query is only read in plain decimal.

interface Schema {
  type?: string | string[]
  format?: string
  pattern?: string
  minimum?: number
  maximum?: number
  minLength?: number
  maxLength?: number
  properties?: Record<string, Schema>
  required?: string[]
}
interface Parameter {
  in: 'path' | 'query' | 'header'
  name: string
  required?: boolean
  schema: Schema
}
interface Operation {
  method: string
  path: string
  parameters: Parameter[]
  body: Schema | undefined
}

/** What the API has handed out so far (ids, ETags): later requests name things that exist. */
interface Known {
  ints: number[]
  uuids: string[]
  etags: string[]
}

const MAX_SAFE = Number.MAX_SAFE_INTEGER
const uuids = ['00000000-0000-0000-0000-000000000000', 'ffffffff-ffff-ffff-ffff-ffffffffffff']
const soon = (hours: number) => new Date(Date.now() + hours * 3600_000).toISOString()

/** Values of a schema's type that are extreme in some way; the caller keeps the ones the schema accepts. */
function extremes(schema: Schema, known: Known): unknown[] {
  const types = [schema.type ?? 'string'].flat()
  const values: unknown[] = []
  if (types.includes('integer') || types.includes('number')) {
    const { minimum = -MAX_SAFE, maximum = MAX_SAFE } = schema
    values.push(minimum + 1, minimum, maximum, maximum - 1, 0, 1, -1, 2 ** 31 - 1, 2 ** 31, -(2 ** 31))
    values.push(MAX_SAFE, -MAX_SAFE, ...known.ints.slice(-8))
  }
  if (types.includes('string')) {
    const max = schema.maxLength ?? 300
    const long = (unit: string) => unit.repeat(Math.max(1, Math.floor(max / unit.length)))
    values.push(
      ...known.etags.slice(-1),
      'a',
      '',
      ' ',
      long('x'),
      long('😀'),
      long('é'),
      long('\u202e'),
      long('\uffff'),
      '\u0000',
      'a\u0000b',
    )
    values.push("'; DROP TABLE users; --", '%00', '../../etc/passwd', '<script>alert(1)</script>', '\t\r\n')
    values.push('javascript:alert(1)', '//evil.example/x', '/\\evil.example', '/images/x.svg', '1e1', '0x10')
    values.push(
      `https://cdn.example.com/${long('a').slice(0, Math.max(0, max - 24))}`,
      long('A').slice(0, 64),
      '-',
    )
    values.push(
      ...uuids,
      ...known.uuids.slice(-4),
      `${long('a').slice(0, Math.max(1, max - 12))}@example.com`,
      'a@b.co',
    )
    values.push(soon(1), soon(2), soon(24 * 365 * 100), '1970-01-01T00:00:00Z', '9999-12-31T23:59:59.999Z')
    values.push('2030-02-28T23:59:60+14:00', '"0"', 'W/"1"', '"99999999999999"', long('!'))
    values.push(...formatVariants(known))
  }
  if (types.includes('boolean')) values.push(true, false)
  if (types.includes('null')) values.push(null)
  return values
}

/**
 * Other spellings of a uuid and a date-time that a format may accept and the database or a Date may not:
 * the URN and braced forms of an id the API handed out, leap seconds, years 0 and 10000, offsets at and
 * past the edges, in both the past and the far future.
 */
function formatVariants(known: Known): string[] {
  const ids = [...uuids, ...known.uuids.slice(-2)]
  const future = new Date(Date.now() + 24 * 3600_000).toISOString().slice(0, 19)
  return [
    ...ids.flatMap((id) => [
      `urn:uuid:${id}`,
      `URN:UUID:${id.toUpperCase()}`,
      `{${id}}`,
      id.replaceAll('-', ''),
    ]),
    '2099-12-31T23:59:60Z',
    '2099-12-31T23:59:60.999Z',
    '2099-06-30T23:59:60Z',
    '2099-12-31T09:59:60-14:00',
    '0000-01-01T00:00:00Z',
    '0000-12-31T23:59:59+14:00',
    '0001-01-01T00:00:00+00:01',
    '10000-01-01T00:00:00Z',
    '9999-12-31T23:59:59-23:59',
    `${future}+23:59`,
    `${future}-23:59`,
    `${future}-00:00`,
    `${future}+24:00`,
    `${future}.123456789z`,
    '2099-02-29T00:00:00Z',
  ]
}

const ajv = new Ajv({ strict: false, allErrors: false })
addFormats.default(ajv)
const validators = new Map<string, ValidateFunction>()
function accepts(schema: Schema, value: unknown): boolean {
  const key = JSON.stringify(schema)
  if (!validators.has(key)) validators.set(key, ajv.compile(schema))
  return validators.get(key)!(value) === true
}

/** What can travel in a path, query or header: text; a header also only in visible Latin-1. */
const asText = (value: unknown) => (typeof value === 'string' ? value : JSON.stringify(value))
const sendableHeader = (value: string) => /^[\x20-\x7e]*$/.test(value) && value.trim() === value

function operationsOf(document: {
  paths: Record<
    string,
    Record<
      string,
      { parameters?: Parameter[]; requestBody?: { content: Record<string, { schema: Schema }> } }
    >
  >
}): Operation[] {
  const operations: Operation[] = []
  for (const [path, methods] of Object.entries(document.paths)) {
    for (const [method, operation] of Object.entries(methods)) {
      operations.push({
        method: method.toUpperCase(),
        path,
        parameters: operation.parameters ?? [],
        body: operation.requestBody?.content['application/json']?.schema,
      })
    }
  }
  // Creating routes first and deleting ones last, so the routes between meet what was made (a cart
  // full of the dearest products reaches checkout).
  const rank = (o: Operation) => (o.path.startsWith('/api/admin') ? 0 : o.method === 'DELETE' ? 2 : 1)
  return operations.sort((a, b) => rank(a) - rank(b))
}

describe('every route with schema-valid extreme values', () => {
  let app: FastifyInstance
  let address: string
  let callers: Record<'customer' | 'admin', TestUser>
  const known: Known = { ints: [], uuids: [], etags: [] }
  const remember = <T>(list: T[], value: T) => {
    if (!list.includes(value)) list.push(value)
  }

  beforeAll(async () => {
    app = await buildTestApp()
    address = await app.listen({ host: '127.0.0.1', port: 0 })
    callers = { customer: await newCustomer(app), admin: await newAdmin(app) }
  })
  afterAll(async () => {
    await app.close()
  })

  /** Signs the caller a token at its user's current token_version (after it logged itself out). */
  async function renewToken(user: TestUser) {
    const { rows } = await app.db.primary.query<{
      role: 'customer' | 'admin'
      is_guest: boolean
      token_version: number
    }>('SELECT role, is_guest, token_version FROM users WHERE id = $1', [user.id])
    const { role, is_guest: guest, token_version: ver } = rows[0]!
    user.token = app.jwt.sign({ sub: user.id, role, guest, ver })
    user.headers.authorization = `Bearer ${user.token}`
  }

  /** Row counts of every table and digests of what only requests change: equal means nothing written. */
  async function fingerprint(): Promise<string> {
    const { rows: tables } = await app.db.primary.query<{ name: string }>(
      `SELECT table_name AS name FROM information_schema.tables
        WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1`,
    )
    const counts = tables.map((t) => `(SELECT count(*) FROM "${t.name}")`).join(` || ',' || `)
    const { rows } = await app.db.primary.query<{ print: string }>(
      `SELECT ${counts} || ',' ||
              (SELECT COALESCE(sum(version), 0) FROM carts) || ',' ||
              (SELECT COALESCE(md5(string_agg(concat_ws('|', name, description, image_url, price_cents, updated_at), ',' ORDER BY id)), '') FROM products)
              AS print`,
    )
    return rows[0]!.print
  }

  /** Remembers ids the API hands out, so later requests can name things that exist. */
  function harvest(body: unknown) {
    if (Array.isArray(body)) return body.forEach(harvest)
    if (body === null || typeof body !== 'object') return
    for (const [key, value] of Object.entries(body)) {
      if (key === 'id' && typeof value === 'number') remember(known.ints, value)
      else if (key === 'id' && typeof value === 'string' && value.length === 36) remember(known.uuids, value)
      else harvest(value)
    }
  }

  async function send(
    operation: Operation,
    user: TestUser,
    params: Record<string, string>,
    query: Record<string, string>,
    headers: Record<string, string>,
    body: unknown,
  ): Promise<{ statusCode: number; body: string; etag?: string }> {
    const path = operation.path.replace(/\{(\w+)\}/g, (_, name: string) => encodeURIComponent(params[name]!))
    const search = new URLSearchParams(query).toString()
    const url = `${path}${search ? `?${search}` : ''}`
    if (path.endsWith('/events')) return openStream(`${address}${url}`)
    const response: LightMyRequestResponse = await app.inject({
      method: operation.method as 'GET',
      url,
      headers: { ...user.headers, ...headers },
      ...(body === undefined ? {} : { payload: body as object }),
    })
    return { statusCode: response.statusCode, body: response.body, etag: response.headers.etag as string }
  }

  /** An event stream is answered with its status and closed at once: it would never end by itself. */
  function openStream(url: string) {
    return new Promise<{ statusCode: number; body: string }>((resolve, reject) => {
      const request = get(url, { agent: false }, (response) => {
        resolve({ statusCode: response.statusCode!, body: '' })
        request.destroy()
      })
      request.on('error', reject)
    })
  }

  /** The values to try for one parameter or property: its extremes that the schema accepts. */
  function valuesFor(schema: Schema, where: 'path' | 'query' | 'header' | 'body'): unknown[] {
    const candidates = extremes(schema, known)
    if (where === 'body') return candidates.filter((value) => accepts(schema, value))
    // Path, query and header values are text, read with coercion: a string the schema accepts once read.
    const coercing = new Ajv({ strict: false, coerceTypes: true })
    addFormats.default(coercing)
    const check = coercing.compile({ type: 'object', properties: { v: schema } })
    return [...new Set(candidates.map(asText))].filter(
      (text) => check({ v: text }) && (where !== 'header' || sendableHeader(text)),
    )
  }

  it(
    'when every route gets them as a customer and as an admin, then no answer is a 5xx and no 4xx writes anything',
    { timeout: 300_000 },
    async () => {
      const failures: string[] = []
      const latestEtag: Record<string, string> = {}
      let requests = 0
      for (const round of [1, 2]) {
        for (const operation of operationsOf((await app.inject('/docs/json')).json())) {
          for (const [role, user] of Object.entries(callers)) {
            const byPart = { path: {}, query: {}, header: {} } as Record<
              'path' | 'query' | 'header',
              Record<string, string>
            >
            const variants: { part: 'path' | 'query' | 'header' | 'body'; name: string; value: unknown }[] =
              []
            for (const parameter of operation.parameters) {
              const values = valuesFor(parameter.schema, parameter.in) as string[]
              if (parameter.required && values[0] !== undefined)
                byPart[parameter.in][parameter.name] = values[0]
              for (const value of values) variants.push({ part: parameter.in, name: parameter.name, value })
            }
            const baseBody: Record<string, unknown> = {}
            const maxBody: Record<string, unknown> = {}
            for (const [name, schema] of Object.entries(operation.body?.properties ?? {})) {
              const values = valuesFor(schema, 'body')
              if (operation.body?.required?.includes(name) && values.length > 0) baseBody[name] = values[0]
              const numbers = values.filter((v): v is number => typeof v === 'number')
              const texts = values.filter((v): v is string => typeof v === 'string')
              maxBody[name] =
                numbers.length > 0
                  ? Math.max(...numbers)
                  : (texts.sort((a, b) => b.length - a.length)[0] ?? values[0])
              for (const value of values) variants.push({ part: 'body', name, value })
            }
            const bodies = operation.body ? [baseBody, maxBody] : [undefined]
            const requestsOf = [
              ...bodies.map((body) => ({ ...byPart, body, label: 'baseline' })),
              ...variants.map(({ part, name, value }) => {
                if (part === 'body')
                  return {
                    ...byPart,
                    body: { ...baseBody, [name]: value },
                    label: `${name}=${JSON.stringify(value).slice(0, 40)}`,
                  }
                return {
                  ...byPart,
                  [part]: { ...byPart[part], [name]: value as string },
                  body: bodies.at(-1),
                  label: `${part} ${name}=${JSON.stringify(value).slice(0, 40)}`,
                }
              }),
            ]
            for (const request of requestsOf) {
              const before = await fingerprint()
              // An ETag the API handed out is sent as this caller's latest: a write then really writes.
              const headers = Object.fromEntries(
                Object.entries(request.header).map(([name, value]) => [
                  name,
                  known.etags.includes(value) ? (latestEtag[role] ?? value) : value,
                ]),
              )
              const answer = await send(operation, user, request.path, request.query, headers, request.body)
              requests++
              // A logout ends the caller's session: the rest of the run goes on with a token of the new version.
              if (operation.path === '/api/auth/logout' && answer.statusCode < 300) await renewToken(user)
              const what = `round ${round} ${role} ${operation.method} ${operation.path} ${request.label}`
              // Readiness answers 503 by design while a dependency is down or the replica lags.
              const mayBeUnavailable = operation.path === '/health/ready' && answer.statusCode === 503
              if (answer.statusCode >= 500 && !mayBeUnavailable)
                failures.push(`${what}: ${answer.statusCode} ${answer.body}`)
              if (answer.statusCode >= 400 && answer.statusCode < 500 && (await fingerprint()) !== before)
                failures.push(`${what}: ${answer.statusCode} but something was written`)
              if (answer.statusCode < 300 && answer.body) harvest(JSON.parse(answer.body))
              if (answer.etag) {
                remember(known.etags, answer.etag)
                latestEtag[role] = answer.etag
              }
            }
          }
        }
      }
      console.log(`extreme values: ${requests} requests`)
      expect(failures).toEqual([])
    },
  )

  it(
    'when an admin repeats a route with its largest valid body until the sum passes 2^31 - 1, then no answer is a 5xx',
    { timeout: 300_000 },
    async () => {
      // Each call is within its bounds; what overflows is a total many of them build up (a stock column).
      const failures: string[] = []
      const limits: unknown[] = []
      const admin = callers.admin
      const created = await app.inject({
        method: 'POST',
        url: '/api/admin/products',
        headers: admin.headers,
        payload: { sku: `acc-${Date.now()}`, name: 'Accumulation', priceCents: 1, stock: 0 },
      })
      const productId = created.json<{ id: number }>().id
      for (const operation of operationsOf((await app.inject('/docs/json')).json())) {
        const properties = Object.entries(operation.body?.properties ?? {})
        const largest = Math.max(
          0,
          ...properties.map(([, schema]) => (schema.type === 'integer' ? (schema.maximum ?? 0) : 0)),
        )
        // Routes whose largest integer is small would need millions of calls; their totals are bounded
        // by other rules (a cart line, a per-user limit).
        if (largest < 100_000) continue
        // A sale takes units from the product instead of adding to a total, and every sale made here
        // would stay on the storefront's list that the browser tests page through.
        if (operation.path === '/api/admin/sales') continue
        const body = Object.fromEntries(
          properties.map(([name, schema]) => [
            name,
            schema.type === 'integer'
              ? name === 'productId'
                ? productId
                : (schema.maximum ?? 1)
              : valuesFor(schema, 'body')[0],
          ]),
        )
        const url = operation.path.replace(/\{(\w+)\}/g, () => String(productId))
        const calls = Math.ceil(2 ** 31 / largest) + 2
        const statuses = new Map<number, number>()
        for (let i = 0; i < calls; i++) {
          const answer = await app.inject({
            method: operation.method as 'POST',
            url,
            headers: admin.headers,
            payload: { ...body, ...(typeof body.sku === 'string' ? { sku: `acc-${i}-${Date.now()}` } : {}) },
          })
          statuses.set(answer.statusCode, (statuses.get(answer.statusCode) ?? 0) + 1)
          if (answer.statusCode === 422) limits.push(answer.json())
          if (answer.statusCode >= 500) {
            failures.push(
              `${operation.method} ${operation.path} call ${i + 1}: ${answer.statusCode} ${answer.body}`,
            )
            break
          }
        }
        console.log(`accumulation ${operation.method} ${operation.path}:`, Object.fromEntries(statuses))
      }
      expect(failures).toEqual([])
      // The restocks that would carry the product's stock past its column were refused, naming the limit.
      expect(limits).toContainEqual({ code: 'STOCK_LIMIT', message: expect.stringContaining('2147483647') })
    },
  )

  it('when a docs page is asked with a 6,000-character query, then no header of the answer repeats it', async () => {
    for (const path of ['/docs', '/docs/', '/docs/static/index.html', '/docs/json']) {
      const answer = await app.inject(`${path}?${'q'.repeat(6000)}`)
      expect(answer.statusCode, path).toBeLessThan(500)
      const headers = Object.values(answer.headers).map(String).join('\n')
      expect(headers.length, `${path}: ${headers.slice(0, 200)}`).toBeLessThan(2000)
    }
    expect((await app.inject('/docs/static/index.html?x=1')).headers.location).toBe('/docs/')
  })

  it('when an integer in a path or query is spelled another way (1e1, 0x10, 010, +1, 1.0), then every route answers 400', async () => {
    const failures: string[] = []
    const admin = callers.admin
    for (const operation of operationsOf((await app.inject('/docs/json')).json())) {
      const integers = operation.parameters.filter((p) => p.in !== 'header' && p.schema.type === 'integer')
      for (const parameter of integers) {
        for (const spelling of ['1e1', '0x10', '010', '+1', '1.0', '0b1', ' 1']) {
          const params = Object.fromEntries(
            operation.parameters.filter((p) => p.in === 'path').map((p) => [p.name, '1']),
          )
          const query: Record<string, string> = {}
          if (parameter.in === 'path') params[parameter.name] = spelling
          else query[parameter.name] = spelling
          const answer = await send(operation, admin, params, query, {}, operation.body ? {} : undefined)
          if (answer.statusCode !== 400)
            failures.push(
              `${operation.method} ${operation.path} ${parameter.name}=${spelling}: ${answer.statusCode}`,
            )
        }
      }
    }
    expect(failures).toEqual([])
  })
})
