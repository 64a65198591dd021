import { describe, expect, it } from 'vitest'
import { kendallTau } from './waiting-room.js'

describe("Kendall's tau of the waiting-room report", () => {
  it('when two orders agree, disagree, or differ by one swap, then tau is 1, -1, or (pairs - 2) / pairs', () => {
    const n = 1000
    const ranks = Array.from({ length: n }, (_, i) => i)
    expect(kendallTau(ranks, ranks)).toBe(1)
    expect(kendallTau(ranks, [...ranks].reverse())).toBe(-1)
    const swapped = [...ranks]
    ;[swapped[10], swapped[11]] = [swapped[11]!, swapped[10]!]
    const pairs = (n * (n - 1)) / 2
    expect(kendallTau(ranks, swapped)).toBeCloseTo((pairs - 2) / pairs, 12)
  })

  it('when the first order is not sorted, then it is the pairs that count, not the positions', () => {
    // The same pairing of arrival and place, listed in another order.
    expect(kendallTau([3, 1, 2, 0], [30, 10, 20, 0])).toBe(1)
    expect(kendallTau([0, 1, 2], [1, 0, 2])).toBeCloseTo(1 / 3, 12)
  })
})
