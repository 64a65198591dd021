import { linkUrl, priceCents, stockQuantity, text } from '../schemas.js'
import { PAGE_SIZE } from './catalog.service.js'

export const productSchema = {
  type: 'object',
  required: ['id', 'sku', 'name', 'description', 'priceCents', 'imageUrl', 'available'],
  additionalProperties: false,
  properties: {
    id: { type: 'integer' },
    sku: { type: 'string' },
    name: { type: 'string' },
    description: { type: 'string' },
    priceCents: { type: 'integer' },
    imageUrl: { type: ['string', 'null'] },
    category: { type: ['string', 'null'], description: 'the category slug' },
    available: { type: 'integer', description: 'display only: may lag the authority by a moment' },
    updatedAt: { type: 'string', format: 'date-time' },
  },
} as const

export const pageQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    limit: { type: 'integer', minimum: 1, maximum: PAGE_SIZE.max, default: PAGE_SIZE.default },
    cursor: { type: 'string', maxLength: 64 },
  },
} as const

export const productSearchQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    ...pageQuery.properties,
    q: { ...text({ maxLength: 100 }), description: 'words to find in the name or description' },
    category: { type: 'string', pattern: '^[a-z0-9-]{1,40}$', description: 'a category slug' },
  },
} as const

export const categorySchema = {
  type: 'object',
  required: ['slug', 'name', 'productCount'],
  additionalProperties: false,
  properties: { slug: { type: 'string' }, name: { type: 'string' }, productCount: { type: 'integer' } },
} as const

export const newProductBody = {
  type: 'object',
  required: ['sku', 'name', 'priceCents', 'stock'],
  additionalProperties: false,
  properties: {
    sku: { type: 'string', pattern: '^[A-Za-z0-9-]{1,64}$' },
    name: text({ minLength: 1, maxLength: 200 }),
    description: { ...text({ maxLength: 2000 }), default: '' },
    priceCents,
    imageUrl: { ...linkUrl, type: ['string', 'null'], default: null },
    stock: stockQuantity,
  },
} as const

export const productChangesBody = {
  type: 'object',
  minProperties: 1,
  additionalProperties: false,
  properties: {
    name: text({ minLength: 1, maxLength: 200 }),
    description: text({ maxLength: 2000 }),
    imageUrl: { ...linkUrl, type: ['string', 'null'] },
  },
} as const

export const priceBody = {
  type: 'object',
  required: ['priceCents'],
  additionalProperties: false,
  properties: { priceCents },
} as const

export const restockBody = {
  type: 'object',
  required: ['quantity'],
  additionalProperties: false,
  properties: { quantity: { ...stockQuantity, minimum: 1 } },
} as const
