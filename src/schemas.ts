// Schemas shared by many routes, each defined once. They are plain objects (not $ref) so that both the
// strict body validator and the serializer can use them as they are, and `as const` so that the type
// provider (json-schema-to-ts) derives the handlers' types from them.

export const errorSchema = {
  type: 'object',
  required: ['code', 'message'],
  additionalProperties: false,
  properties: { code: { type: 'string' }, message: { type: 'string' } },
} as const

/**
 * The id of a row, in a path or a body: a whole number from 1 to 2^31 - 1, so a made-up huge id is a 400
 * here, never a number the database or JavaScript cannot hold.
 */
export const rowId = { type: 'integer', minimum: 1, maximum: 2147483647 } as const

/** The `:id` of a path such as /api/products/:id or /api/sales/:id. */
export const idParams = {
  type: 'object',
  required: ['id'],
  additionalProperties: false,
  properties: { id: rowId },
} as const

// Money and quantities are integers in bounds; the strict body validator refuses "5" and true.
export const priceCents = { type: 'integer', minimum: 0, maximum: 100_000_000 } as const
export const stockQuantity = { type: 'integer', minimum: 0, maximum: 1_000_000 } as const

/** An answer that is a whole list, `{ items: [...] }`, each item of the given schema. */
export const listOf = <const Item extends object>(item: Item) =>
  ({
    type: 'object',
    required: ['items'],
    additionalProperties: false,
    properties: { items: { type: 'array', items: item } },
  }) as const

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
