import { describe, expect, it } from 'vitest'
import { isStorableDateTime } from './validation.plugin.js'

describe('date-time format', () => {
  it('when a date-time names second 60, year 0 or 10000, an impossible day or an offset of 24 hours, then it is refused', () => {
    const refused = [
      '2099-12-31T23:59:60Z',
      '2030-02-28T23:59:60+14:00',
      '0000-01-01T00:00:00Z',
      '0001-01-01T00:00:00+00:01',
      '10000-01-01T00:00:00Z',
      '9999-12-31T23:59:59-00:01',
      '2099-02-29T00:00:00Z',
      '2030-04-31T00:00:00Z',
      '2030-01-01T00:00:00+24:00',
      '2030-01-01T24:00:00Z',
      '2030-01-01T00:00:00',
    ]
    expect(refused.filter(isStorableDateTime)).toEqual([])
  })

  it('when a date-time is one a Date and Postgres both hold, then it is accepted, in any RFC 3339 spelling', () => {
    const accepted = [
      '0001-01-01T00:00:00Z',
      '9999-12-31T23:59:59.999Z',
      '2028-02-29T12:00:00+23:59',
      '2030-06-01t12:00:00z',
      '2030-06-01 12:00:00-00:00',
      '2030-06-01T12:00:00.123456789Z',
    ]
    expect(accepted.filter((text) => !isStorableDateTime(text))).toEqual([])
  })
})
