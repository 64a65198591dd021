/** How a batch queue groups its items and how many batches it writes at once. */
export interface BatchQueueOptions<T> {
  /** Writes one batch; every item's own answer is the writer's business. */
  write(batch: T[]): Promise<void>
  /** Most items in one batch. */
  maxBatch: number
  /** How long the first item of an idle queue waits for company before its batch is written. */
  maxWaitMs: number
  /** How many batches are written at once. */
  maxConcurrent: number
  /**
   * Backpressure: the most items that may wait, and the error a push past that throws. Without it the
   * queue is unbounded (while every writer is busy it just grows).
   */
  bound?: { maxQueued: number; full(): Error }
}

/**
 * A queue that writes its items in batches: a full batch goes at once, a lone item waits maxWaitMs
 * for company, and up to maxConcurrent batches are written at the same time. While they are, the next
 * ones fill up, so the batch size follows the load: 1 when idle, up to maxBatch under a stampede.
 * Generic: it knows nothing of orders or sales (./order-batcher.ts is what it writes for the gate).
 */
export function createBatchQueue<T>(options: BatchQueueOptions<T>) {
  const queue: T[] = []
  let writing = 0
  let timer: NodeJS.Timeout | null = null
  const idleWaiters: (() => void)[] = []

  function push(item: T): void {
    if (options.bound && queue.length >= options.bound.maxQueued) throw options.bound.full()
    queue.push(item)
    // While every writer is busy the queue just grows, and the next writer to finish takes it.
    if (writing >= options.maxConcurrent) return
    if (queue.length >= options.maxBatch) startWriters()
    else timer ??= setTimeout(startWriters, options.maxWaitMs)
  }

  function startWriters(): void {
    if (timer) clearTimeout(timer)
    timer = null
    while (queue.length > 0 && writing < options.maxConcurrent) {
      const batch = queue.splice(0, options.maxBatch)
      writing++
      void options.write(batch).finally(() => {
        writing--
        if (queue.length > 0) startWriters()
        else if (writing === 0) idleWaiters.splice(0).forEach((wake) => wake())
      })
    }
  }

  return {
    push,
    /** Writes what is queued and waits for it; for a stopping worker. */
    async flush(): Promise<void> {
      if (queue.length === 0 && writing === 0) return
      const idle = new Promise<void>((resolve) => idleWaiters.push(resolve))
      startWriters()
      await idle
    },
    get queued() {
      return queue.length
    },
  }
}
