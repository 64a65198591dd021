// Schemas shared by many routes, each defined once. They are plain objects (not $ref) so that both the
// strict body validator and the serializer can use them as they are, and `as const` so that the type
// provider (json-schema-to-ts) derives the handlers' types from them.

export const errorSchema = {
  type: 'object',
  required: ['code', 'message'],
  additionalProperties: false,
  properties: { code: { type: 'string' }, message: { type: 'string' } },
} as const

/** One product line of a cart or an order, at the server's price. */
export const lineItemProperties = {
  productId: { type: 'integer' },
  quantity: { type: 'integer' },
  unitPriceCents: { type: 'integer' },
} as const

export const idempotencyKeyHeader = {
  type: 'object',
  properties: {
    'idempotency-key': {
      type: 'string',
      description: 'a unique key per attempt; a retry with the same key returns the first answer',
    },
  },
} as const

/**
 * Free text a client may store: no NUL character, which Postgres' text cannot hold (it would fail the
 * INSERT with a 500); every other character is the client's business.
 */
export const text = <const Limits extends { minLength?: number; maxLength: number }>(limits: Limits) =>
  ({ type: 'string', pattern: '^[^\\u0000]*$', ...limits }) as const

/**
 * A link the storefront may put in an `<img src>`: an http(s) URL, or a path on this site (`/images/x.svg`,
 * but not `//host` or `/\host`, which browsers read as another host). Visible ASCII only, so no
 * `javascript:` or `data:` scheme and no control character gets through.
 */
export const linkUrl = {
  type: 'string',
  maxLength: 500,
  pattern: '^(https?://[!-~]+|/(?![/\\\\])[!-~]*)$',
} as const
