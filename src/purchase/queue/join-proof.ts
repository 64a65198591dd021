import { createHmac } from 'node:crypto'
import { createChallenge, extractParams, verifySolution } from 'altcha-lib/v1'
import { ProofRequiredError } from '../../errors.js'

/** A proof-of-work challenge for a place (ALTCHA v1): find `number` with SHA-256(salt + number) = challenge. */
export interface JoinChallenge {
  algorithm: string
  challenge: string
  maxnumber: number
  salt: string
  signature: string
}

/** How long a challenge may be solved and used. Judged by the worker's clock: a bot cost, not a sale decision. */
const CHALLENGE_LIFETIME_MS = 10 * 60_000

/**
 * Proofs of work for a waiting room's places, from a maintained library (altcha-lib): the challenge is
 * signed (HMAC with a key derived from the JWT secret) and names the sale and the buyer, so a solution
 * is good for that buyer's place in that sale only, and cannot be handed round a bot farm.
 */
export function createJoinProofs(secret: string) {
  const hmacKey = createHmac('sha256', secret).update('stampede waiting-room proof v1').digest('hex')
  return {
    async challenge(saleId: number, userId: string, difficulty: number): Promise<JoinChallenge> {
      const made = await createChallenge({
        hmacKey,
        maxnumber: difficulty,
        expires: new Date(Date.now() + CHALLENGE_LIFETIME_MS),
        params: { sale: String(saleId), user: userId },
      })
      return { ...made, maxnumber: difficulty }
    },

    /** Throws ProofRequiredError unless `proof` (base64 JSON, as ALTCHA sends it) solves a challenge of ours for this buyer and sale. */
    async verify(proof: string | undefined, saleId: number, userId: string): Promise<void> {
      if (!proof) throw new ProofRequiredError(saleId)
      const params = (() => {
        try {
          return extractParams(proof)
        } catch {
          return {}
        }
      })()
      const solved = await verifySolution(proof, hmacKey, true).catch(() => false)
      if (!solved || params.sale !== String(saleId) || params.user !== userId)
        throw new ProofRequiredError(saleId)
    },
  }
}

export type JoinProofs = ReturnType<typeof createJoinProofs>
