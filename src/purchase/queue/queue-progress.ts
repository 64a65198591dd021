import type { QueueProgress } from '../../sales/sale-events.js'
import type { AdmitRound } from './waiting-room.js'

/**
 * What the jobs process tells a waiting room's buyers after each admission round: the places admitted
 * so far and the recent admission rate (for an estimated wait), published when they change and at least
 * once a second, so a page that shows a place never goes more than about a second without news.
 */
export function createQueueProgress(deps: {
  intervalMs: number
  publish(progress: QueueProgress): Promise<void>
  now?: () => number
}) {
  const now = deps.now ?? Date.now
  const sales = new Map<number, { perSecond: number; last: string; sentAt: number }>()
  // Smoothing of the admission rate: each round weighs this much, so a quiet round or two does not
  // send the estimate to infinity.
  const weight = 0.2
  return {
    async after(saleId: number, round: AdmitRound): Promise<void> {
      const kept = sales.get(saleId) ?? { perSecond: 0, last: '', sentAt: 0 }
      kept.perSecond = (1 - weight) * kept.perSecond + (weight * round.admittedNow * 1000) / deps.intervalMs
      sales.set(saleId, kept)
      const progress: QueueProgress = {
        saleId,
        state: round.state,
        admitted: round.admitted,
        places: round.places,
        perSecond: Math.round(kept.perSecond * 10) / 10,
      }
      const text = `${progress.state}:${progress.admitted}:${progress.places}`
      if (text === kept.last && now() - kept.sentAt < 1000) return
      kept.last = text
      kept.sentAt = now()
      await deps.publish(progress)
    },

    /** Forgets the sales no longer running. */
    forgetAllBut(saleIds: number[]): void {
      const running = new Set(saleIds)
      for (const id of sales.keys()) if (!running.has(id)) sales.delete(id)
    },
  }
}
