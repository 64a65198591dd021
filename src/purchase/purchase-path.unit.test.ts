import { describe, expect, it } from 'vitest'
import type { StoredSale } from '../sales/sale.js'
import { createSaleTerms } from './purchase-path.js'

const sale = { id: 7, productId: 3, priceCents: 500, perUserLimit: 2 } as StoredSale

describe('sale terms', () => {
  it('when a stampede asks for a sale at once, then the sale is read once and kept', async () => {
    let reads = 0
    const terms = createSaleTerms(async () => {
      reads++
      return sale
    })
    expect(await Promise.all([terms.of(7), terms.of(7), terms.of(7)])).toEqual([sale, sale, sale])
    expect(await terms.of(7)).toBe(sale)
    expect(reads).toBe(1)
  })

  it('when the first lookup fails or finds nothing, then the next one reads again: no failure is kept', async () => {
    const answers: (() => Promise<StoredSale | undefined>)[] = [
      () => Promise.reject(new Error('connection terminated')),
      () => Promise.resolve(undefined),
      () => Promise.resolve(sale),
    ]
    let reads = 0
    const terms = createSaleTerms(() => answers[reads++]!())
    await expect(terms.of(7)).rejects.toThrow('connection terminated')
    expect(await terms.of(7)).toBeUndefined()
    expect(await terms.of(7)).toBe(sale)
    expect(await terms.of(7)).toBe(sale)
    expect(reads).toBe(3)
  })
})
