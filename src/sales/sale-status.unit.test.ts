import { describe, expect, it } from 'vitest'
import { saleStatus } from './sale-status.js'

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
})
