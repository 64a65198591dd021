import { describe, expect, it } from 'vitest'
import { saleFactsOf, saleStatus } from './sale.js'

describe('saleStatus', () => {
  const window = { startsAt: new Date('2026-01-01T10:00:00Z'), endsAt: new Date('2026-01-01T11:00:00Z') }
  const at = (iso: string) => Date.parse(iso)

  it('when the window has not opened, then it is upcoming whatever is available', () => {
    expect(saleStatus(window, 5, at('2026-01-01T09:59:59.999Z'))).toBe('upcoming')
    expect(saleStatus(window, 0, at('2026-01-01T09:00:00Z'))).toBe('upcoming')
  })

  it('when the window is open, then it is active with units left and sold_out without', () => {
    expect(saleStatus(window, 1, at('2026-01-01T10:00:00Z'))).toBe('active')
    expect(saleStatus(window, 0, at('2026-01-01T10:30:00Z'))).toBe('sold_out')
  })

  it('when the window has closed (its end is exclusive), then it is ended even with units left', () => {
    expect(saleStatus(window, 7, at('2026-01-01T11:00:00Z'))).toBe('ended')
  })

  it('when the window comes as the API writes it (ISO text), then the status is the same', () => {
    const iso = { startsAt: window.startsAt.toISOString(), endsAt: window.endsAt.toISOString() }
    expect(saleStatus(iso, 1, at('2026-01-01T10:59:59.999Z'))).toBe('active')
    expect(saleStatus(iso, 1, at('2026-01-01T11:00:00Z'))).toBe('ended')
  })
})

describe('saleFactsOf', () => {
  it('when a stored sale becomes facts, then its stock numbers stay behind and its window is ISO text', () => {
    const terms = {
      id: 1,
      productId: 2,
      productName: 'Kettle',
      productImageUrl: null,
      regularPriceCents: 900,
      priceCents: 500,
      unitsTotal: 10,
      perUserLimit: 1,
      registeredOnly: false,
      queue: null,
      queueDifficulty: 0,
    }
    const stock = { available: 4, reserved: 3, sold: 3, version: 6 }
    const window = { startsAt: new Date('2026-01-01T10:00:00Z'), endsAt: new Date('2026-01-01T11:00:00Z') }
    expect(saleFactsOf({ ...terms, ...window, ...stock })).toEqual({
      ...terms,
      startsAt: '2026-01-01T10:00:00.000Z',
      endsAt: '2026-01-01T11:00:00.000Z',
    })
  })
})
