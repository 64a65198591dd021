import { withTransaction } from '../db/transaction.js'
import { InvalidCursorError, NotFoundError, SkuTakenError } from '../errors.js'
import type { Db } from '../plugins/postgres.plugin.js'
import {
  findProduct,
  insertProduct,
  listProductsAfter,
  restock,
  updateProduct,
  type NewProduct,
  type Product,
  type ProductChanges,
} from './products.repository.js'

export const PAGE_SIZE = { default: 20, max: 100 } as const

// The cursor is opaque to clients: the last id of the page, base64url-encoded.
const encodeCursor = (id: number) => Buffer.from(`p:${id}`).toString('base64url')
function decodeCursor(cursor: string | undefined): number {
  if (cursor === undefined) return 0
  const match = /^p:(\d{1,15})$/.exec(Buffer.from(cursor, 'base64url').toString())
  if (!match?.[1]) throw new InvalidCursorError()
  return Number(match[1])
}

export interface ProductPage {
  items: Product[]
  nextCursor: string | null
}

export function createCatalog(deps: { db: Db }) {
  const { db } = deps

  // Reads go to the replica: a catalog page may be a few milliseconds old, which is fine for display.
  // Nothing that decides stock reads through here.
  async function getProduct(id: number): Promise<Product> {
    const product = await findProduct(db.replica, id)
    if (!product) throw new NotFoundError(`product ${id}`)
    return product
  }

  async function listProducts(cursor: string | undefined, limit: number): Promise<ProductPage> {
    const items = await listProductsAfter(db.replica, decodeCursor(cursor), limit)
    const last = items.at(-1)
    return { items, nextCursor: items.length === limit && last ? encodeCursor(last.id) : null }
  }

  // Admin writes answer from the primary, so the admin sees the change at once even if the replica lags.
  async function requireFromPrimary(id: number): Promise<Product> {
    const product = await findProduct(db.primary, id)
    if (!product) throw new NotFoundError(`product ${id}`)
    return product
  }

  return {
    getProduct,
    listProducts,

    async createProduct(product: NewProduct): Promise<Product> {
      const id = await withTransaction(db.primary, (tx) => insertProduct(tx, product))
      if (id === undefined) throw new SkuTakenError(product.sku)
      return requireFromPrimary(id)
    },

    async updateProduct(id: number, changes: ProductChanges): Promise<Product> {
      if (!(await updateProduct(db.primary, id, changes))) throw new NotFoundError(`product ${id}`)
      return requireFromPrimary(id)
    },

    async restock(id: number, quantity: number): Promise<Product> {
      if (!(await restock(db.primary, id, quantity))) throw new NotFoundError(`product ${id}`)
      return requireFromPrimary(id)
    },
  }
}

export type Catalog = ReturnType<typeof createCatalog>
