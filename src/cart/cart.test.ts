import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  buildTestApp,
  fillCart,
  newAdmin,
  newCustomer,
  newProduct,
  type TestUser,
} from '../../test/support/app.js'

interface CartBody {
  version: number
  items: { productId: number; quantity: number; unitPriceCents: number; lineTotalCents: number }[]
  totalCents: number
}

describe('cart', () => {
  let app: FastifyInstance
  let admin: TestUser

  beforeAll(async () => {
    app = await buildTestApp()
    admin = await newAdmin(app)
  })

  afterAll(async () => {
    await app.close()
  })

  const readCart = async (user: TestUser) => {
    const response = await app.inject({ url: '/api/cart', headers: user.headers })
    return { etag: response.headers.etag as string, cart: response.json<CartBody>() }
  }

  const putItem = (user: TestUser, productId: number, quantity: number, ifMatch?: string) =>
    app.inject({
      method: 'PUT',
      url: `/api/cart/items/${productId}`,
      headers: ifMatch === undefined ? user.headers : { ...user.headers, 'if-match': ifMatch },
      payload: { quantity },
    })

  const deleteItem = (user: TestUser, productId: number, ifMatch: string) =>
    app.inject({
      method: 'DELETE',
      url: `/api/cart/items/${productId}`,
      headers: { ...user.headers, 'if-match': ifMatch },
    })

  it('when a new user reads the cart, then it is empty with ETag "0"', async () => {
    const customer = await newCustomer(app)

    const response = await app.inject({ url: '/api/cart', headers: customer.headers })

    expect(response.statusCode).toBe(200)
    expect(response.headers.etag).toBe('"0"')
    expect(response.json()).toEqual({ version: 0, items: [], totalCents: 0 })
  })

  it('when a write comes without If-Match, then it is 428 and nothing is written', async () => {
    const customer = await newCustomer(app)
    const productId = await newProduct(app, admin, { stock: 5 })

    const response = await putItem(customer, productId, 1)

    expect(response.statusCode).toBe(428)
    expect(response.json()).toMatchObject({ code: 'PRECONDITION_REQUIRED' })
    expect(await readCart(customer)).toEqual({ etag: '"0"', cart: { version: 0, items: [], totalCents: 0 } })
  })

  it('when a write carries the current ETag, then it is 200 with a new ETag', async () => {
    const customer = await newCustomer(app)
    const productId = await newProduct(app, admin, { stock: 5 })
    const { etag } = await readCart(customer)

    const response = await putItem(customer, productId, 3, etag)

    expect(response.statusCode).toBe(200)
    expect(response.headers.etag).not.toBe(etag)
    expect(response.json()).toMatchObject({ items: [{ productId, quantity: 3 }] })
    expect((await readCart(customer)).etag).toBe(response.headers.etag)
  })

  it('when a write carries a stale ETag, then it is 412 and nothing is written', async () => {
    const customer = await newCustomer(app)
    const [first, second] = [
      await newProduct(app, admin, { stock: 5 }),
      await newProduct(app, admin, { stock: 5 }),
    ]
    const { etag: stale } = await readCart(customer)
    expect((await putItem(customer, first, 1, stale)).statusCode).toBe(200)
    const before = await readCart(customer)

    const response = await putItem(customer, second, 2, stale)

    expect(response.statusCode).toBe(412)
    expect(response.json()).toMatchObject({ code: 'PRECONDITION_FAILED' })
    expect(await readCart(customer)).toEqual(before)
  })

  it('when If-Match is not a version the API handed out, then it is 412', async () => {
    const customer = await newCustomer(app)
    const productId = await newProduct(app, admin, { stock: 5 })

    for (const ifMatch of ['*', 'abc', '"-1"', '"99"']) {
      const response = await putItem(customer, productId, 1, ifMatch)
      expect(response.statusCode, ifMatch).toBe(412)
    }
    expect((await readCart(customer)).etag).toBe('"0"')
  })

  it('when two tabs write with the same ETag at once, then exactly one is 200 and the other 412', async () => {
    const customer = await newCustomer(app)
    const [first, second] = [
      await newProduct(app, admin, { stock: 5 }),
      await newProduct(app, admin, { stock: 5 }),
    ]
    await fillCart(app, customer, [{ productId: first, quantity: 1 }])
    const { etag, cart } = await readCart(customer)

    const answers = await Promise.all([putItem(customer, first, 4, etag), putItem(customer, second, 2, etag)])

    expect(answers.map((a) => a.statusCode).sort()).toEqual([200, 412])
    const after = await readCart(customer)
    expect(after.cart.version).toBe(cart.version + 1)
    const winner = answers.find((a) => a.statusCode === 200)!
    expect(after.cart).toEqual(winner.json())
  })

  it('when the first two writes to a brand-new cart race with ETag "0", then exactly one is 200', async () => {
    const customer = await newCustomer(app)
    const [first, second] = [
      await newProduct(app, admin, { stock: 5 }),
      await newProduct(app, admin, { stock: 5 }),
    ]

    const answers = await Promise.all([
      putItem(customer, first, 1, '"0"'),
      putItem(customer, second, 1, '"0"'),
    ])

    expect(answers.map((a) => a.statusCode).sort()).toEqual([200, 412])
    const { cart } = await readCart(customer)
    expect(cart.version).toBe(1)
    expect(cart.items).toHaveLength(1)
  })

  it('when an item is deleted with If-Match, then it leaves the cart; deleting it again is 404', async () => {
    const customer = await newCustomer(app)
    const [kept, removed] = [
      await newProduct(app, admin, { stock: 5 }),
      await newProduct(app, admin, { stock: 5 }),
    ]
    await fillCart(app, customer, [
      { productId: kept, quantity: 1 },
      { productId: removed, quantity: 2 },
    ])
    const { etag } = await readCart(customer)
    const withoutIfMatch = await app.inject({
      method: 'DELETE',
      url: `/api/cart/items/${removed}`,
      headers: customer.headers,
    })
    expect(withoutIfMatch.statusCode).toBe(428)

    const response = await deleteItem(customer, removed, etag)

    expect(response.statusCode).toBe(200)
    expect(response.json<CartBody>().items.map((i) => i.productId)).toEqual([kept])
    const current = await readCart(customer)
    const again = await deleteItem(customer, removed, current.etag)
    expect(again.statusCode).toBe(404)
    expect(again.json()).toMatchObject({ code: 'NOT_FOUND' })
    expect(await readCart(customer)).toEqual(current)
  })

  it('when an unknown product is put in the cart, then it is 404 and the version is unchanged', async () => {
    const customer = await newCustomer(app)
    const { etag } = await readCart(customer)

    const response = await putItem(customer, 2147483647, 1, etag)

    expect(response.statusCode).toBe(404)
    expect(response.json()).toMatchObject({ code: 'NOT_FOUND' })
    expect((await readCart(customer)).etag).toBe(etag)
  })

  it('when the cart is read, then line and cart totals come from the server prices', async () => {
    const customer = await newCustomer(app)
    const [cheap, dear] = [
      await newProduct(app, admin, { stock: 5, priceCents: 250 }),
      await newProduct(app, admin, { stock: 5, priceCents: 1999 }),
    ]
    await fillCart(app, customer, [
      { productId: cheap, quantity: 3 },
      { productId: dear, quantity: 2 },
    ])

    const { cart } = await readCart(customer)

    expect(cart.items).toEqual([
      expect.objectContaining({ productId: cheap, quantity: 3, unitPriceCents: 250, lineTotalCents: 750 }),
      expect.objectContaining({ productId: dear, quantity: 2, unitPriceCents: 1999, lineTotalCents: 3998 }),
    ])
    expect(cart.totalCents).toBe(750 + 3998)
  })
})
