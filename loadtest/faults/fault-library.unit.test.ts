import { describe, expect, it } from 'vitest'
import { seededRandom } from './fault-library.js'

describe('seededRandom', () => {
  it('when two runs use the same seed, then they pick the same moments (a failing run can be replayed)', () => {
    const a = seededRandom(42)
    const b = seededRandom(42)
    const first = Array.from({ length: 5 }, () => a())
    expect(Array.from({ length: 5 }, () => b())).toEqual(first)
    expect(first.every((x) => x >= 0 && x < 1)).toBe(true)
  })

  it('when the seeds differ, then the sequences differ', () => {
    const a = seededRandom(1)
    const b = seededRandom(2)
    expect(Array.from({ length: 3 }, () => a())).not.toEqual(Array.from({ length: 3 }, () => b()))
  })
})
