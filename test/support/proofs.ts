import { solveChallenge } from 'altcha-lib/v1'
import type { JoinChallenge } from '../../src/purchase/queue/join-proof.js'

/** Solves a waiting room's proof-of-work challenge with the library's own solver; returns the payload to send. */
export async function solvedProof(challenge: JoinChallenge): Promise<string> {
  const { algorithm, salt, signature, maxnumber } = challenge
  const solution = await solveChallenge(challenge.challenge, salt, algorithm, maxnumber).promise
  if (!solution) throw new Error('the challenge has no solution within its maxnumber')
  const payload = { algorithm, challenge: challenge.challenge, number: solution.number, salt, signature }
  return Buffer.from(JSON.stringify(payload)).toString('base64')
}
