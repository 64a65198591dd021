export const orderSchema = {
  type: 'object',
  required: ['id', 'status', 'totalCents', 'expiresAt', 'items'],
  properties: {
    id: { type: 'string', format: 'uuid' },
    userId: { type: 'string' },
    saleId: { type: ['integer', 'null'] },
    status: { type: 'string', enum: ['reserved', 'paid', 'cancelled', 'expired'] },
    totalCents: { type: 'integer' },
    expiresAt: { type: 'string', format: 'date-time' },
    createdAt: { type: 'string', format: 'date-time' },
    paidAt: { type: ['string', 'null'], format: 'date-time' },
    items: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          productId: { type: 'integer' },
          quantity: { type: 'integer' },
          unitPriceCents: { type: 'integer' },
        },
      },
    },
  },
} as const

export const orderIdParams = {
  type: 'object',
  required: ['id'],
  additionalProperties: false,
  properties: { id: { type: 'string', format: 'uuid' } },
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
