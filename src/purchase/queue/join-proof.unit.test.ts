import { describe, expect, it } from 'vitest'
import { solvedProof } from '../../../test/support/proofs.js'
import { createJoinProofs } from './join-proof.js'

// The waiting room's proof of work, solved here with the library's own solver.

const proofs = createJoinProofs('a proof test secret of at least 32 characters')

const solved = async (saleId: number, userId: string, difficulty = 500) =>
  solvedProof(await proofs.challenge(saleId, userId, difficulty))

describe('a proof of work for a place in a waiting room', () => {
  it('when the challenge is solved, then it proves the place of that buyer in that sale, and of no one else', async () => {
    const proof = await solved(7, 'buyer-a')
    await expect(proofs.verify(proof, 7, 'buyer-a')).resolves.toBeUndefined()
    await expect(proofs.verify(proof, 7, 'buyer-b')).rejects.toMatchObject({ code: 'PROOF_REQUIRED' })
    await expect(proofs.verify(proof, 8, 'buyer-a')).rejects.toMatchObject({ code: 'PROOF_REQUIRED' })
  })

  it('when the proof is missing, unreadable, or its number or signature is wrong, then it is refused', async () => {
    const proof = await solved(7, 'buyer-a')
    const payload = JSON.parse(Buffer.from(proof, 'base64').toString()) as Record<string, unknown>
    const reencode = (changed: Record<string, unknown>) =>
      Buffer.from(JSON.stringify({ ...payload, ...changed })).toString('base64')
    for (const bad of [
      undefined,
      'not base64 json',
      reencode({ number: Number(payload.number) + 1 }),
      reencode({ signature: '0'.repeat(64) }),
    ])
      await expect(proofs.verify(bad, 7, 'buyer-a')).rejects.toMatchObject({ code: 'PROOF_REQUIRED' })
  })
})
