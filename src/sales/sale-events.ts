import type { Redis } from 'ioredis'
import type { Sale, SaleStatus } from './sale.js'

export interface SaleNumbers {
  saleId: number
  remaining: number
  /** Units buyers hold: reserved or paid. */
  taken: number
  status: SaleStatus
}

/** What the live feed says about a sale, from the sale as a page shows it. */
export const numbersOf = (sale: Pick<Sale, 'id' | 'unitsTotal' | 'remaining' | 'status'>): SaleNumbers => ({
  saleId: sale.id,
  remaining: sale.remaining,
  taken: sale.unitsTotal - sale.remaining,
  status: sale.status,
})

/**
 * A waiting room's progress (src/purchase/queue/), for everyone in it: a buyer knows its own place, so
 * `admitted` (places admitted so far) tells it how many are still ahead. `closed` alone (the sale took
 * its last unit) is sent at once by the worker that sold it; the rest by the jobs process's admission
 * rounds, a few times a second.
 */
export interface QueueProgress {
  saleId: number
  state: 'upcoming' | 'open' | 'closed'
  admitted?: number
  places?: number
  /** Places admitted per second lately, for an estimated wait; 0 until the first admissions. */
  perSecond?: number
}

type Listener = (numbers: SaleNumbers) => void
type QueueListener = (progress: QueueProgress) => void

const CHANNEL = 'sale-events'
const QUEUE_CHANNEL = 'queue-events'

/** Adds `listener` to the sale's set in `bySale`; returns the function that removes it (and an empty set). */
function addListener<L>(bySale: Map<number, Set<L>>, saleId: number, listener: L): () => void {
  const set = bySale.get(saleId) ?? new Set()
  bySale.set(saleId, set)
  set.add(listener)
  return () => {
    set.delete(listener)
    if (set.size === 0) bySale.delete(saleId)
  }
}

/** Sends a waiting room's progress to every worker's listeners, at once (no throttle). */
export async function publishQueueProgress(publisher: Redis, progress: QueueProgress): Promise<void> {
  await publisher.publish(QUEUE_CHANNEL, JSON.stringify(progress))
}

/**
 * Live numbers of flash sales for server-sent events. Any worker that sells a unit asks for a
 * publish; publishes are throttled per sale (at most one per `intervalMs` per worker) and go through
 * Redis pub/sub, so every worker pushes the same numbers to its own SSE clients. Delivery to clients is
 * throttled again, so a client sees a few updates a second however many workers publish.
 */
export function createSaleEvents(deps: {
  publisher: Redis
  subscriber: Redis
  snapshot(saleId: number): Promise<SaleNumbers>
  intervalMs: number
  onError(err: unknown): void
}) {
  const { publisher, subscriber, intervalMs } = deps
  const listeners = new Map<number, Set<Listener>>()
  const queueListeners = new Map<number, Set<QueueListener>>()
  const publishTimers = new Map<number, NodeJS.Timeout>()
  const deliveries = new Map<number, { latest: SaleNumbers | null; timer: NodeJS.Timeout | null }>()

  void subscriber.subscribe(CHANNEL, QUEUE_CHANNEL).catch(deps.onError)
  subscriber.on('message', (channel: string, message: string) => {
    if (channel === QUEUE_CHANNEL) {
      // Concurrency: delivered as it arrives, unthrottled: "sold out" must reach every waiting buyer in
      // well under a second, and the jobs process already sends progress only a few times a second.
      const progress = JSON.parse(message) as QueueProgress
      for (const listener of queueListeners.get(progress.saleId) ?? []) listener(progress)
      return
    }
    const numbers = JSON.parse(message) as SaleNumbers
    if (listeners.has(numbers.saleId)) deliverThrottled(numbers)
  })

  function deliverThrottled(numbers: SaleNumbers) {
    const state = deliveries.get(numbers.saleId) ?? { latest: null, timer: null }
    deliveries.set(numbers.saleId, state)
    state.latest = numbers
    state.timer ??= setTimeout(() => {
      state.timer = null
      for (const listener of listeners.get(numbers.saleId) ?? []) listener(state.latest!)
    }, intervalMs)
  }

  return {
    /** A sale's numbers moved; publishes them (throttled) to every worker. */
    changed(saleId: number): void {
      if (publishTimers.has(saleId)) return
      publishTimers.set(
        saleId,
        setTimeout(() => {
          publishTimers.delete(saleId)
          deps
            .snapshot(saleId)
            .then((numbers) => publisher.publish(CHANNEL, JSON.stringify(numbers)))
            .catch(deps.onError)
        }, intervalMs),
      )
    },

    /** Registers an SSE client; returns the function that unregisters it. */
    listen: (saleId: number, listener: Listener) => addListener(listeners, saleId, listener),

    /** The sale took its last unit: everyone in its waiting room is told now. */
    soldOut(saleId: number): void {
      publishQueueProgress(publisher, { saleId, state: 'closed' }).catch(deps.onError)
    },

    /** Registers a listener of a waiting room's progress; returns the function that unregisters it. */
    listenQueue: (saleId: number, listener: QueueListener) => addListener(queueListeners, saleId, listener),

    async close(): Promise<void> {
      for (const timer of publishTimers.values()) clearTimeout(timer)
      for (const state of deliveries.values()) if (state.timer) clearTimeout(state.timer)
      subscriber.disconnect()
    },
  }
}

export type SaleEvents = ReturnType<typeof createSaleEvents>
