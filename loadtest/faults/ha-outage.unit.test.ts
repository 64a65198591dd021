import { describe, expect, it } from 'vitest'
import { outageAfter } from './ha-campaign.js'

describe('outageAfter', () => {
  it('when 201s stop after the fault and come back, then recovery is the first 201 after the gap', () => {
    // Orphan connections commit for a moment after the fault (1010, 1020), then nothing until 9000.
    const oks = [900, 1010, 1020, 9000, 9010]
    const failures = [1500, 2000, 8000, 9500]
    expect(outageAfter(1000, oks, failures)).toEqual({ recoveryMs: 8000, outageMs: 7980, outage5xx: 3 })
  })

  it('when 201s never stop for a second, then there was no outage', () => {
    expect(outageAfter(1000, [1005, 1900, 2800], [1500])).toEqual({
      recoveryMs: 0,
      outageMs: 0,
      outage5xx: 0,
    })
  })

  it('when two gaps follow the fault, then the first of a second or more is the outage', () => {
    expect(outageAfter(0, [10, 2010, 2020, 9020], [])).toEqual({
      recoveryMs: 2010,
      outageMs: 2000,
      outage5xx: 0,
    })
  })

  it('when no 201 follows the fault, then the sale never recovered', () => {
    expect(outageAfter(1000, [500], [1200, 1300])).toEqual({ recoveryMs: null, outageMs: null, outage5xx: 2 })
  })
})
