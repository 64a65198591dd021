import type { Config } from '../../config.js'
import type { Db } from '../../db/pool.js'
import {
  NotFoundError,
  PerUserLimitError,
  SaleNotActiveError,
  SaleUnavailableError,
  SoldOutError,
} from '../../errors.js'
import type { Metrics } from '../../metrics.js'
import type { PurchasePath } from '../purchase-path.js'
import { rebuildGateFromPostgres } from './gate-rebuild.js'
import { createOrderBatcher } from './order-batcher.js'
import { createSoldOutMemo } from '../sold-out-memo.js'
import type { StockGate } from './stock-gate.js'
import type { Log } from '../../log.js'

/** How long a worker answers SOLD_OUT from memory after the gate said so. */
const SOLD_OUT_MEMO_MS = 250

/**
 * The redis-gate strategy. The gate (a Lua script in Redis) answers most buyers on its own (sold out,
 * not open, over the limit); an admitted buyer holds a reservation token until its order is written in
 * a batch, and gets the order when that batch commits. Postgres keeps the last word: the batch's
 * conditional UPDATE. The reconciler (./reconciler.ts, in the jobs process) releases tokens whose
 * worker died and rebuilds a gate Redis lost.
 */
export function createGatePurchasePath(deps: {
  db: Db
  gate: StockGate
  config: Config
  metrics: Metrics
  log: Pick<Log, 'warn'>
}): PurchasePath {
  const { db, gate, config } = deps
  const soldOut = createSoldOutMemo(SOLD_OUT_MEMO_MS)
  const batcher = createOrderBatcher({
    db,
    gate,
    metrics: deps.metrics,
    log: deps.log,
    reservationTtlSeconds: config.RESERVATION_TTL_SECONDS,
    maxBatch: config.ORDER_BATCH_MAX,
    maxWaitMs: config.ORDER_BATCH_WAIT_MS,
    maxConcurrent: config.ORDER_BATCH_CONCURRENCY,
  })

  /**
   * Asks the gate; a gate that is missing or stale is rebuilt from Postgres first, and asked once more.
   * Concurrency: fail closed. Without a gate fenced to this Redis server nobody is admitted (no gate
   * must never mean unlimited stock, and a stale one may offer units Postgres no longer has). Many
   * workers rebuild at once after a restart; one builds, the others find it current. A gate that is
   * still not there after that (Redis restarted again, Postgres away) answers 503.
   */
  async function admitFenced(saleId: number, userId: string, quantity: number) {
    const first = await gate.admit(saleId, userId, quantity)
    if (first.outcome !== 'gate_missing') return first
    const rebuilt = await rebuildGateFromPostgres(db.primary, gate, saleId).catch((err: Error) => {
      deps.log.warn({ err, saleId }, 'could not rebuild the gate; the reconciler will retry')
      return 'failed' as const
    })
    if (rebuilt === 'no_sale') throw new NotFoundError(`sale ${saleId}`)
    if (rebuilt === 'built' || rebuilt === 'current') {
      const second = await gate.admit(saleId, userId, quantity)
      if (second.outcome !== 'gate_missing') return second
    }
    throw new SaleUnavailableError()
  }

  return {
    strategy: 'redis-gate',

    async purchase({ userId, saleId, quantity, idempotency }) {
      const admission = await admitFenced(saleId, userId, quantity)
      switch (admission.outcome) {
        case 'admitted':
          return batcher.submit({ saleId, userId, quantity, token: admission.token, idempotency })
        case 'sold_out':
          if (admission.available === 0) soldOut.remember(saleId)
          throw new SoldOutError(saleId)
        case 'not_started':
          throw new SaleNotActiveError(saleId, 'upcoming')
        case 'ended':
          throw new SaleNotActiveError(saleId, 'ended')
        case 'per_user_limit':
          throw new PerUserLimitError()
      }
    },

    available: (saleId) => gate.available(saleId),
    inFlight: (saleId) => gate.unitsInFlight(saleId),
    knownAnswer: (saleId) => (soldOut.knows(saleId) ? new SoldOutError(saleId) : null),

    async saleCreated(saleId) {
      await rebuildGateFromPostgres(db.primary, gate, saleId)
    },

    flush: () => batcher.flush(),
  }
}
