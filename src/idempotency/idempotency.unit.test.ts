import { describe, expect, it } from 'vitest'
import { idempotentRequest, replayOrReuseError } from './idempotency.js'

const request = { method: 'POST', url: '/api/sales/1/purchase', body: { quantity: 1 } }
const USER = '0b9e1f3c-5d7a-4f1e-9c2b-1a2b3c4d5e6f'

describe('Idempotency-Key parsing', () => {
  it('when a request has no key, then it is not idempotent', () => {
    expect(idempotentRequest(USER, undefined, request)).toBeNull()
  })

  it('when a key is empty, too long, not ASCII or repeated as a header list, then it is 400', () => {
    for (const key of ['', 'x'.repeat(256), 'clé', 'with space', ['a', 'b']]) {
      expect(() => idempotentRequest(USER, key, request)).toThrow(
        expect.objectContaining({ statusCode: 400, code: 'INVALID_IDEMPOTENCY_KEY' }),
      )
    }
  })

  it('when two requests differ in path or body, then their hashes differ; the same request hashes the same', () => {
    const a = idempotentRequest(USER, 'k1', request)!
    expect(idempotentRequest(USER, 'k1', { ...request })!.requestHash).toBe(a.requestHash)
    expect(idempotentRequest(USER, 'k1', { ...request, body: { quantity: 2 } })!.requestHash).not.toBe(
      a.requestHash,
    )
    expect(idempotentRequest(USER, 'k1', { ...request, url: '/api/sales/2/purchase' })!.requestHash).not.toBe(
      a.requestHash,
    )
  })

  it('when a stored answer is found for a key, then the same request replays it and another gets 422', () => {
    const mine = idempotentRequest(USER, 'k1', request)!
    const stored = { requestHash: mine.requestHash, status: 201, body: { id: 'o1' } }
    expect(replayOrReuseError(mine, stored)).toMatchObject({ storedStatus: 201, storedBody: { id: 'o1' } })
    expect(replayOrReuseError(mine, { ...stored, requestHash: 'other' })).toMatchObject({
      statusCode: 422,
      code: 'IDEMPOTENCY_KEY_REUSED',
    })
  })
})
