import type { FastifyInstance } from 'fastify'
import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Metrics } from '../metrics.js'
import { buildTestApp, newAdmin, newProduct, type TestUser } from '../../test/support/app.js'

interface Page {
  items: { id: number; name: string; category: string | null }[]
  nextCursor: string | null
}

async function queriesSent(metrics: Metrics): Promise<number> {
  const { values } = await metrics.dbQueries.get()
  return values.reduce((sum, v) => sum + v.value, 0)
}

/**
 * Waits until the replica (which serves catalogue reads) shows the products as the primary does, so a
 * search right after creating them does not read, and cache, the state from before.
 */
async function untilReplicaHas(app: FastifyInstance, ids: number[]): Promise<void> {
  const state =
    'SELECT id, name, description, category_slug FROM products WHERE id = ANY($1::int[]) ORDER BY id'
  const wanted = JSON.stringify((await app.db.primary.query(state, [ids])).rows)
  for (let i = 0; i < 200; i++) {
    if (JSON.stringify((await app.db.read((pool) => pool.query(state, [ids]))).rows) === wanted) return
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
  throw new Error('the replica did not catch up')
}

describe('catalogue search and categories', () => {
  let a: FastifyInstance
  let b: FastifyInstance
  let admin: TestUser

  beforeAll(async () => {
    // Two instances share Redis and Postgres like two PM2 workers; each has its own L1 and counters.
    a = await buildTestApp()
    b = await buildTestApp()
    admin = await newAdmin(a)
  })
  afterAll(async () => {
    await Promise.all([a.close(), b.close()])
  })

  const search = async (app: FastifyInstance, query: Record<string, string>) => {
    const response = await app.inject({ url: `/api/products?${new URLSearchParams(query)}` })
    expect(response.statusCode).toBe(200)
    return response.json<Page>()
  }

  it('when a shopper searches for a word, then products with it in the name or description match, case-insensitively, and others do not', async () => {
    const word = `zq${randomUUID().slice(0, 8)}`
    const inName = await newProduct(a, admin, { stock: 1, name: `The ${word.toUpperCase()} kettle` })
    const inDescription = await newProduct(a, admin, { stock: 1, name: 'Plain mug' })
    await a.inject({
      method: 'PATCH',
      url: `/api/admin/products/${inDescription}`,
      headers: admin.headers,
      payload: { description: `Goes well with the ${word} kettle.` },
    })
    const unrelated = await newProduct(a, admin, { stock: 1, name: 'Unrelated teapot' })
    await untilReplicaHas(a, [inName, inDescription, unrelated])

    const page = await search(a, { q: word })
    expect(page.items.map((p) => p.id)).toEqual([inName, inDescription])
    expect(await search(a, { q: `${word}-nothing-like-it` })).toEqual({ items: [], nextCursor: null })
  })

  it('when the words hold LIKE wildcards, then they match themselves, not everything', async () => {
    const word = `pct${randomUUID().slice(0, 8)}`
    const id = await newProduct(a, admin, { stock: 1, name: `100% ${word}` })
    await untilReplicaHas(a, [id])
    expect((await search(a, { q: `100% ${word}` })).items.map((p) => p.id)).toEqual([id])
    expect((await search(a, { q: `%_${word}x` })).items).toEqual([])
  })

  it('when a search has more results than the page, then the cursor gives the next page', async () => {
    const word = `pg${randomUUID().slice(0, 8)}`
    const ids = [
      await newProduct(a, admin, { stock: 1, name: `${word} one` }),
      await newProduct(a, admin, { stock: 1, name: `${word} two` }),
      await newProduct(a, admin, { stock: 1, name: `${word} three` }),
    ]
    await untilReplicaHas(a, ids)
    const first = await search(a, { q: word, limit: '2' })
    expect(first.items.map((p) => p.id)).toEqual(ids.slice(0, 2))
    const second = await search(a, { q: word, limit: '2', cursor: first.nextCursor! })
    expect(second).toEqual({ items: [expect.objectContaining({ id: ids[2] })], nextCursor: null })
  })

  it('when products are filed under a category, then ?category= lists only those, and words narrow it further', async () => {
    const slug = `t-${randomUUID().slice(0, 8)}`
    await a.db.primary.query('INSERT INTO categories (slug, name) VALUES ($1, $2)', [slug, 'Test shelf'])
    const filed = await newProduct(a, admin, { stock: 1, name: 'Filed lamp' })
    const alsoFiled = await newProduct(a, admin, { stock: 1, name: 'Filed chair' })
    const elsewhere = await newProduct(a, admin, { stock: 1, name: 'Filed elsewhere lamp' })
    await a.db.primary.query('UPDATE products SET category_slug = $1 WHERE id = ANY($2::int[])', [
      slug,
      [filed, alsoFiled],
    ])
    await untilReplicaHas(a, [filed, alsoFiled, elsewhere])

    const shelf = await search(a, { category: slug })
    expect(shelf.items.map((p) => [p.id, p.category])).toEqual([
      [filed, slug],
      [alsoFiled, slug],
    ])
    expect((await search(a, { category: slug, q: 'lamp' })).items.map((p) => p.id)).toEqual([filed])
    expect(await search(a, { category: 'no-such-shelf' })).toEqual({ items: [], nextCursor: null })

    // The shelf was for this test only: the shop's category menu must not collect them.
    await a.db.primary.query('UPDATE products SET category_slug = NULL WHERE category_slug = $1', [slug])
    await a.db.primary.query('DELETE FROM categories WHERE slug = $1', [slug])
  })

  it('when the demo catalogue is migrated, then /api/categories lists its six categories with product counts', async () => {
    const response = await a.inject({ url: '/api/categories' })
    expect(response.statusCode).toBe(200)
    const { items } = response.json<{ items: { slug: string; name: string; productCount: number }[] }>()
    const slugs = items.map((c) => c.slug)
    for (const slug of ['backpacks', 'coffee', 'headphones', 'keyboards', 'sneakers', 'watches'])
      expect(slugs).toContain(slug)
    expect(items.find((c) => c.slug === 'coffee')).toMatchObject({ name: 'Coffee' })
    expect(items.every((c) => Number.isInteger(c.productCount) && c.productCount >= 0)).toBe(true)
  })

  it('when 200 shoppers send the same search at once, then one database query answers them all, and another worker answers from Redis', async () => {
    const word = `hot${randomUUID().slice(0, 8)}`
    const id = await newProduct(a, admin, { stock: 1, name: `${word} blender` })
    await untilReplicaHas(a, [id])
    const [beforeA, beforeB] = [await queriesSent(a.metrics), await queriesSent(b.metrics)]

    const pages = await Promise.all(Array.from({ length: 200 }, () => search(a, { q: word })))
    expect(pages.every((page) => page.items.length === 1 && page.items[0]!.id === id)).toBe(true)
    expect((await search(b, { q: word })).items.map((p) => p.id)).toEqual([id])

    // The replica read costs one query (a lag check may add one); the 199 others and worker b cost none.
    expect((await queriesSent(a.metrics)) - beforeA).toBeLessThanOrEqual(2)
    expect((await queriesSent(b.metrics)) - beforeB).toBe(0)
  })

  it('when the words hold a NUL character, then the request is refused with 400 before it reaches Postgres', async () => {
    const response = await a.inject({ url: `/api/products?q=${encodeURIComponent('a\u0000b')}` })
    expect(response.statusCode).toBe(400)
  })
})
