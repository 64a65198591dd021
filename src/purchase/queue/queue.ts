import type { TokenClaims } from '../../auth/token-claims.js'
import { NoWaitingRoomError, NotFoundError, RegisteredOnlyError } from '../../errors.js'
import type { QueueTerms } from '../../sales/sales.repository.js'
import type { JoinChallenge, JoinProofs } from './join-proof.js'
import type { Place, QueuedSale, WaitingRoom } from './waiting-room.js'

/** When and in which order nginx read a join: its Queue-Arrival header, `<ms>.<n>` (src/purchase/edge/edge.lua). */
export interface Arrival {
  atMs: number
  n: number
}

/** The Queue-Arrival header, or undefined for anything else (a request that did not come through nginx). */
export function arrivalOf(header: string | undefined): Arrival | undefined {
  const match = header && /^(\d{13})\.(\d{1,15})$/.exec(header)
  return match ? { atMs: Number(match[1]), n: Number(match[2]) } : undefined
}

/**
 * A buyer and a sale's waiting room: take a place, see where it stands. The waiting room's terms (its
 * kind, the raffle's seed, the window) never change once the sale exists: read once per sale and worker.
 */
export function createQueueEntry(deps: {
  waitingRoom: Pick<WaitingRoom, 'join' | 'placeOf'>
  proofs: JoinProofs
  terms: { of(saleId: number): Promise<QueueTerms | undefined> }
  /** Whether guests are kept out (the sale's cached facts). */
  registeredOnly(saleId: number): Promise<boolean>
}) {
  async function queuedSale(saleId: number): Promise<QueuedSale & { queueDifficulty: number }> {
    const terms = await deps.terms.of(saleId)
    if (!terms) throw new NotFoundError(`sale ${saleId}`)
    if (!terms.queue) throw new NoWaitingRoomError(saleId)
    return { ...terms, queue: terms.queue }
  }

  return {
    /**
     * POST /api/sales/:id/queue: the buyer's place, taken now or found (one per buyer). `queueArrival` is
     * the Queue-Arrival header nginx stamped the join with.
     */
    async join(buyer: TokenClaims, saleId: number, queueArrival?: string, proof?: string): Promise<Place> {
      const sale = await queuedSale(saleId)
      if (buyer.guest && (await deps.registeredOnly(saleId))) throw new RegisteredOnlyError(saleId)
      if (sale.queueDifficulty > 0) {
        // A buyer with a place (a second tab, a retry) keeps it without another proof.
        const place = await deps.waitingRoom.placeOf(saleId, buyer.sub)
        if (place.status !== 'absent') return place
        await deps.proofs.verify(proof, saleId, buyer.sub)
      }
      return deps.waitingRoom.join(sale, buyer.sub, arrivalOf(queueArrival))
    },

    /** GET /api/sales/:id/queue/challenge: the proof of work a place costs in this sale (difficulty 0: none). */
    async challengeOf(buyer: TokenClaims, saleId: number): Promise<JoinChallenge | null> {
      const sale = await queuedSale(saleId)
      return sale.queueDifficulty > 0 ? deps.proofs.challenge(saleId, buyer.sub, sale.queueDifficulty) : null
    },

    /** GET /api/sales/:id/queue: where the buyer stands; with its admission once it is its turn. */
    async placeOf(buyer: TokenClaims, saleId: number): Promise<Place> {
      await queuedSale(saleId)
      return deps.waitingRoom.placeOf(saleId, buyer.sub)
    },
  }
}

export type QueueEntry = ReturnType<typeof createQueueEntry>
