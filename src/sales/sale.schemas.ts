import { listOf, priceCents, rowId, stockQuantity } from '../schemas.js'

export const saleSchema = {
  type: 'object',
  additionalProperties: false,
  required: [
    'id',
    'productId',
    'priceCents',
    'unitsTotal',
    'perUserLimit',
    'registeredOnly',
    'queue',
    'queueDifficulty',
    'startsAt',
    'endsAt',
    'status',
    'remaining',
  ],
  properties: {
    id: { type: 'integer' },
    productId: { type: 'integer' },
    productName: { type: 'string' },
    productImageUrl: { type: ['string', 'null'] },
    regularPriceCents: { type: 'integer', description: "the product's own price (display only)" },
    priceCents: { type: 'integer' },
    unitsTotal: { type: 'integer' },
    perUserLimit: { type: 'integer' },
    registeredOnly: { type: 'boolean', description: 'guest accounts may not buy' },
    queue: {
      type: ['string', 'null'],
      enum: ['fifo', 'raffle', null],
      description:
        'the waiting room: null for none; fifo admits places in the order they were taken, raffle in a seeded random order (docs/waiting-room.md)',
    },
    queueDifficulty: {
      type: 'integer',
      description:
        "the waiting room's proof of work before a place: the most numbers a client may have to try (0: none)",
    },
    startsAt: { type: 'string', format: 'date-time' },
    endsAt: { type: 'string', format: 'date-time' },
    status: { type: 'string', enum: ['upcoming', 'active', 'sold_out', 'ended'] },
    remaining: {
      type: 'integer',
      description:
        'units still on offer, from the purchase path (the Redis gate or the primary): at most a moment old',
    },
  },
} as const

export const purchaseBody = {
  type: 'object',
  required: ['quantity'],
  additionalProperties: false,
  properties: { quantity: { type: 'integer', minimum: 1, maximum: 10 } },
} as const

export const newSaleBody = {
  type: 'object',
  required: ['productId', 'priceCents', 'units', 'startsAt', 'endsAt'],
  additionalProperties: false,
  properties: {
    productId: rowId,
    priceCents,
    units: { ...stockQuantity, minimum: 1 },
    perUserLimit: { type: 'integer', minimum: 1, maximum: 100, default: 1 },
    registeredOnly: { type: 'boolean', default: false },
    queue: { type: ['string', 'null'], enum: ['fifo', 'raffle', null], default: null },
    queueDifficulty: { type: 'integer', minimum: 0, maximum: 10_000_000, default: 0 },
    startsAt: { type: 'string', format: 'date-time' },
    endsAt: { type: 'string', format: 'date-time' },
  },
} as const

export const auditSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    saleId: { type: 'integer' },
    strategy: { type: 'string' },
    initial: { type: 'integer' },
    available: { type: 'integer' },
    reserved: { type: 'integer' },
    sold: { type: 'integer' },
    ordersReserved: { type: 'integer' },
    ordersPaid: { type: 'integer' },
    gate: { type: ['integer', 'null'] },
    inFlight: { type: ['integer', 'null'] },
    drift: { type: ['integer', 'null'] },
    maxUnitsPerUser: { type: 'integer' },
    perUserLimit: { type: 'integer' },
    oversold: { type: 'boolean' },
    violations: { type: 'array', items: { type: 'string' } },
  },
} as const

/** A comma-separated list of sale ids, e.g. `1,2,3`: at most 50, each below a billion. */
export const saleIdsQuery = {
  type: 'object',
  required: ['ids'],
  additionalProperties: false,
  properties: {
    ids: {
      type: 'string',
      pattern: '^[1-9][0-9]{0,8}(,[1-9][0-9]{0,8}){0,49}$',
      description: 'comma-separated sale ids, at most 50',
    },
  },
} as const

export const saleIdsOf = (ids: string): number[] => [...new Set(ids.split(',').map(Number))]

export const holdingsSchema = listOf({
  type: 'object',
  required: ['saleId', 'units'],
  additionalProperties: false,
  properties: {
    saleId: { type: 'integer' },
    units: {
      type: 'integer',
      description:
        'units counting toward the per-user limit: reserved, paid, or cancelled (an expired reservation counts no more)',
    },
  },
})
