import type { TokenClaims } from '../../auth/token-claims.js'
import { NoWaitingRoomError, NotFoundError, RegisteredOnlyError } from '../../errors.js'
import type { QueueTerms } from '../../sales/sales.repository.js'
import type { Place, QueuedSale, WaitingRoom } from './waiting-room.js'

/**
 * A buyer and a sale's waiting room: take a place, see where it stands. The waiting room's terms (its
 * kind, the raffle's seed, the window) never change once the sale exists: read once per sale and worker.
 */
export function createQueueEntry(deps: {
  waitingRoom: Pick<WaitingRoom, 'join' | 'placeOf'>
  terms: { of(saleId: number): Promise<QueueTerms | undefined> }
  /** Whether guests are kept out (the sale's cached facts). */
  registeredOnly(saleId: number): Promise<boolean>
}) {
  async function queuedSale(saleId: number): Promise<QueuedSale> {
    const terms = await deps.terms.of(saleId)
    if (!terms) throw new NotFoundError(`sale ${saleId}`)
    if (!terms.queue) throw new NoWaitingRoomError(saleId)
    return { ...terms, queue: terms.queue }
  }

  return {
    /** POST /api/sales/:id/queue: the buyer's place, taken now or found (one per buyer). */
    async join(buyer: TokenClaims, saleId: number): Promise<Place> {
      const sale = await queuedSale(saleId)
      if (buyer.guest && (await deps.registeredOnly(saleId))) throw new RegisteredOnlyError(saleId)
      return deps.waitingRoom.join(sale, buyer.sub)
    },

    /** GET /api/sales/:id/queue: where the buyer stands; with its admission once it is its turn. */
    async placeOf(buyer: TokenClaims, saleId: number): Promise<Place> {
      await queuedSale(saleId)
      return deps.waitingRoom.placeOf(saleId, buyer.sub)
    },
  }
}

export type QueueEntry = ReturnType<typeof createQueueEntry>
