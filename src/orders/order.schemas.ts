import { lineItemProperties } from '../schemas.js'

export const orderSchema = {
  type: 'object',
  required: ['id', 'status', 'totalCents', 'expiresAt', 'items'],
  additionalProperties: false,
  properties: {
    id: { type: 'string', format: 'uuid' },
    number: {
      type: 'string',
      description: "the order number shown to shoppers: the id's first 8 characters, upper case",
    },
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
        required: ['productId', 'quantity', 'unitPriceCents'],
        additionalProperties: false,
        properties: lineItemProperties,
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
