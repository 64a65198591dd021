import { describe, expect, it } from 'vitest'
import { createSoldOutMemo } from '../purchase-path.js'
import { parseToken } from './stock-gate.js'

describe('reservation tokens', () => {
  it('when a token is parsed, then it names its user and quantity (the uuid part is ignored)', () => {
    const token = '0b9e1f3c-5d7a-4f1e-9c2b-1a2b3c4d5e6f:3:7f1c2d3e-aaaa-bbbb-cccc-123456789abc'
    expect(parseToken(token)).toEqual({ userId: '0b9e1f3c-5d7a-4f1e-9c2b-1a2b3c4d5e6f', quantity: 3 })
  })
})

describe('sold-out memo', () => {
  it('when the gate said sold out, then the worker knows it for the memo time and not a moment longer', () => {
    let now = 1000
    const memo = createSoldOutMemo(250, () => now)
    expect(memo.knows(7)).toBe(false)

    memo.remember(7)
    now = 1249
    expect(memo.knows(7)).toBe(true)
    expect(memo.knows(8)).toBe(false)
    now = 1250
    expect(memo.knows(7)).toBe(false)
  })
})
