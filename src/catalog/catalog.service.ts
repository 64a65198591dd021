import { createHash } from 'node:crypto'
import type { CachePolicy, TwoLevelCache } from '../cache/two-level-cache.js'
import { withTransaction } from '../db/transaction.js'
import { InvalidCursorError, NotFoundError, SkuTakenError, StockLimitError } from '../errors.js'
import type { Db } from '../db/pool.js'
import {
  findProduct,
  insertProduct,
  listCategories,
  listProductsAfter,
  searchProductsAfter,
  type Category,
  type ProductFilter,
  MAX_UNITS_PER_PRODUCT,
  restockWithinLimit,
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

const pageOf = (items: Product[], limit: number): ProductPage => {
  const last = items.at(-1)
  return { items, nextCursor: items.length === limit && last ? encodeCursor(last.id) : null }
}

// A product page may be this stale after a write on another worker: until its L1 copy is evicted by
// pub/sub (milliseconds) or, if that message is lost, expires (1.5 s ±20%). L2 is deleted by the write.
export const PRODUCT_CACHE: CachePolicy = {
  l1TtlMs: 1500,
  l2: { ttlMs: 45_000, staleMs: 30_000 },
  negativeTtlMs: 5000,
}

// Search and category pages, and the category list: a product write cannot name every page that shows
// the product, so these are not invalidated and live briefly instead. A search result may show a name,
// price or stock up to 2 s (L1) and 10 s (L2) old; display only. A burst of shoppers on one category
// costs one query per 10 s, not one per shopper.
export const SEARCH_CACHE: CachePolicy = {
  l1TtlMs: 2000,
  l2: { ttlMs: 10_000, staleMs: 10_000 },
  negativeTtlMs: 2000,
}

export function createCatalog(deps: { db: Db; cache: TwoLevelCache }) {
  const { db } = deps
  const products = deps.cache.family<Product>('product', PRODUCT_CACHE)
  const searches = deps.cache.family<ProductPage>('product-search', SEARCH_CACHE)
  const categories = deps.cache.family<Category[]>('categories', SEARCH_CACHE)

  // Served through the two-level cache; on a miss the product is read through `db.read` (the replica
  // while its lag is under the bound, display only). Nothing that decides stock reads through here.
  // Concurrency: right after a write the miss reads the primary instead. The write's invalidation is
  // instant but the replica replays it up to REPLICA_MAX_LAG_MS later; a reload from the replica in
  // between would put the old row back into L2 for its whole TTL (45 s) under the new version.
  async function getProduct(id: number): Promise<Product> {
    const product = await products.get(id, ({ recentlyWritten }) =>
      recentlyWritten ? findProduct(db.primary, id) : db.read((pool) => findProduct(pool, id)),
    )
    if (!product) throw new NotFoundError(`product ${id}`)
    return product
  }

  // Pages are not cached (one product change would touch every page that shows it); they read the
  // replica while it is within the lag bound. Display only: the replica may lag.
  async function listProducts(cursor: string | undefined, limit: number): Promise<ProductPage> {
    const items = await db.read((pool) => listProductsAfter(pool, decodeCursor(cursor), limit))
    return pageOf(items, limit)
  }

  // A page of the catalogue, or with words or a category only what matches them. A filtered page goes
  // through the cache, keyed by a digest of the whole question (the words may be long). Display only:
  // read from the replica while it is within the lag bound.
  async function searchProducts(
    filter: ProductFilter,
    cursor: string | undefined,
    limit: number,
  ): Promise<ProductPage> {
    const q = filter.q?.trim() || undefined
    if (!q && !filter.category) return listProducts(cursor, limit)
    const afterId = decodeCursor(cursor)
    const key = createHash('sha256')
      .update(JSON.stringify([q ?? null, filter.category ?? null, afterId, limit]))
      .digest('base64url')
    const page = await searches.get(key, async () => {
      const matching = { q, category: filter.category }
      return pageOf(await db.read((pool) => searchProductsAfter(pool, matching, afterId, limit)), limit)
    })
    return page!
  }

  async function listAllCategories(): Promise<Category[]> {
    return (await categories.get('all', () => db.read((pool) => listCategories(pool))))!
  }

  // Admin writes answer from the primary, so the admin sees the change at once even if the replica lags.
  async function requireFromPrimary(id: number): Promise<Product> {
    const product = await findProduct(db.primary, id)
    if (!product) throw new NotFoundError(`product ${id}`)
    return product
  }

  // Every write invalidates after it committed: the version bump, L2 delete and pub/sub eviction
  // must come after the new row is visible, or a reader could cache the old one again.
  return {
    getProduct,
    searchProducts,
    listCategories: listAllCategories,

    async createProduct(product: NewProduct): Promise<Product> {
      const id = await withTransaction(db.primary, (tx) => insertProduct(tx, product))
      if (id === undefined) throw new SkuTakenError(product.sku)
      // Someone may have asked for this id before it existed: drop the cached "not found".
      await products.invalidate(id)
      return requireFromPrimary(id)
    },

    async updateProduct(id: number, changes: ProductChanges): Promise<Product> {
      if (!(await updateProduct(db.primary, id, changes))) throw new NotFoundError(`product ${id}`)
      await products.invalidate(id)
      return requireFromPrimary(id)
    },

    // The product page shows `available`. Checkouts and purchases change it too, but do not invalidate:
    // on a hot product that would empty the cache on every sale. There it is display only, as stale as
    // the L2 TTL; the stock decision is always made on the primary.
    async restock(id: number, quantity: number): Promise<Product> {
      const outcome = await restockWithinLimit(db.primary, id, quantity)
      if (outcome === 'not found') throw new NotFoundError(`product ${id}`)
      if (outcome === 'over limit') throw new StockLimitError(MAX_UNITS_PER_PRODUCT)
      await products.invalidate(id)
      return requireFromPrimary(id)
    },
  }
}

export type Catalog = ReturnType<typeof createCatalog>
