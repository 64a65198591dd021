import { describe, expect, it } from 'vitest'
import { outageAfter } from './ha-campaign.js'

describe('outageAfter', () => {
  it('when 201s stop after the fault and come back, then recovery is the first 201 after the stop and the last 5xx', () => {
    // Orphan connections commit for a moment after the fault (1010, 1020), then nothing until 9000.
    const oks = [900, 1010, 1020, 9000, 9010, 9700]
    const failures = [1500, 2000, 8000, 9500]
    expect(outageAfter(1000, oks, failures)).toEqual({ recoveryMs: 8700, outageMs: 7980, outage5xx: 4 })
  })

  it('when 201s never stop for a second and nothing fails, then there was no outage', () => {
    expect(outageAfter(1000, [1005, 1900, 2800], [500])).toEqual({ recoveryMs: 0, outageMs: 0, outage5xx: 0 })
  })

  it('when the sale never stops but some requests fail, then recovery is the first 201 after the last 5xx', () => {
    expect(outageAfter(0, [10, 500, 900, 1300], [400, 1000])).toEqual({
      recoveryMs: 1300,
      outageMs: 0,
      outage5xx: 2,
    })
  })

  it('when no 201 follows the last failure, then the sale never recovered', () => {
    expect(outageAfter(1000, [500, 1100], [1200, 1300])).toEqual({
      recoveryMs: null,
      outageMs: null,
      outage5xx: 2,
    })
  })
})
