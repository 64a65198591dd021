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
