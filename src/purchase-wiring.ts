import type { Redis } from 'ioredis'
import type pg from 'pg'
import type { Config } from './config.js'
import type { Db } from './db/pool.js'
import type { Log } from './log.js'
import type { Metrics } from './metrics.js'
import { createGatePurchasePath } from './purchase/gate/gate-purchase-path.js'
import { createStockGate } from './purchase/gate/stock-gate.js'
import { orderReleaseHooks } from './release-hooks.js'
import { createPostgresPurchasePath } from './purchase/postgres/postgres-purchase-path.js'
import type { PurchasePath } from './purchase/purchase-path.js'
import { createAdmissions, createWaitingRoom } from './purchase/queue/waiting-room.js'
import { rowStrategy } from './stock/stock.repository.js'
import { countedIn, retryPolicyOf } from './stock/stock-retry.js'

// How stock is decided, wired once for both composition roots: the API workers (src/app.ts) and the
// jobs process (src/jobs-app.ts) get the same gate and the same release hooks from here.

/**
 * The Redis gate and what releasing orders does with it. The gate exists under every strategy: orders
 * it admitted earlier release their units to it, whatever this process sells with.
 */
export function createGateWiring(deps: {
  config: Config
  primary: pg.Pool
  redis: Redis
  log: Pick<Log, 'warn'>
}) {
  const gate = createStockGate(deps.redis, {
    tokenTtlMs: deps.config.GATE_TOKEN_TTL_MS,
    keptAfterEndMs: deps.config.GATE_KEPT_AFTER_END_SECONDS * 1000,
  })
  return {
    gate,
    /** Whether flash sales sell through the gate (then the reconciler checks each sale's gate too). */
    sellsThroughGate: deps.config.STOCK_STRATEGY === 'redis-gate',
    /** The release hooks (src/release-hooks.ts); `saleChanged` tells the live numbers a sale moved. */
    releaseHooks: (saleChanged?: (saleId: number) => void) =>
      orderReleaseHooks({ primary: deps.primary, gate, log: deps.log, saleChanged }),
  }
}

/**
 * Everything an API worker sells with: the gate wiring, the row strategy cart checkouts reserve with,
 * and the one choice of how flash-sale stock is decided (src/purchase/purchase-path.ts), from STOCK_STRATEGY.
 */
export function createPurchaseWiring(deps: {
  config: Config
  db: Db
  redis: Redis
  metrics: Metrics
  log: Pick<Log, 'warn'>
}) {
  const { config, db, metrics, log } = deps
  const wiring = createGateWiring({ config, primary: db.primary, redis: deps.redis, log })
  // Cart checkouts always reserve with a row strategy: under redis-gate (which only sells flash sales)
  // that is the atomic one, a single conditional UPDATE per row.
  const rowStrategyName = config.STOCK_STRATEGY === 'redis-gate' ? 'atomic' : config.STOCK_STRATEGY
  const rows = rowStrategy(rowStrategyName, {
    lockTimeoutMs: config.STOCK_LOCK_TIMEOUT_MS,
    retry: retryPolicyOf(config),
    hooks: countedIn(metrics, rowStrategyName),
  })
  const path: PurchasePath = wiring.sellsThroughGate
    ? createGatePurchasePath({ db, gate: wiring.gate, config, metrics, log })
    : createPostgresPurchasePath({ db, rows, config })
  return { ...wiring, rows, path }
}

/**
 * The waiting rooms of sales (src/purchase/queue/), for the API workers (places, admissions) and the jobs
 * process (admission rounds) alike: admissions are signed with a key derived from the JWT secret, so every
 * worker (and every host) checks them alike.
 */
export function createWaitingRoomWiring(config: Config, redis: Redis) {
  const admissions = createAdmissions(config.JWT_SECRET)
  const waitingRoom = createWaitingRoom(redis, {
    admissions,
    admitFactor: config.WAITING_ROOM_ADMIT_FACTOR,
    leaseMs: config.WAITING_ROOM_LEASE_SECONDS * 1000,
    keptAfterEndMs: config.GATE_KEPT_AFTER_END_SECONDS * 1000,
  })
  return { admissions, waitingRoom }
}
