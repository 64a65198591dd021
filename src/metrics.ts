import { collectDefaultMetrics, Counter, Histogram, Registry } from 'prom-client'

// Every metric the app exports is declared here, once, so `grep metrics.` finds every use and the
// dashboards and alert rules can be checked against this list.
export function createMetrics() {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })
  return {
    registry,
    stockConflicts: new Counter({
      name: 'stock_conflicts_total',
      help: 'Stock writes that lost a race (optimistic version clash, pessimistic lock timeout)',
      labelNames: ['strategy'] as const,
      registers: [registry],
    }),
    stockRetries: new Histogram({
      name: 'stock_retries',
      help: 'Retries one stock decision needed before it won or saw the stock gone',
      labelNames: ['strategy'] as const,
      buckets: [0, 1, 2, 4, 8, 16, 32, 64],
      registers: [registry],
    }),
    ordersTotal: new Counter({
      name: 'orders_total',
      help: 'Orders that reached a status',
      labelNames: ['status'] as const,
      registers: [registry],
    }),
    reservationsExpired: new Counter({
      name: 'reservations_expired_total',
      help: 'Unpaid orders released by the expiry sweeper',
      registers: [registry],
    }),
  }
}

export type Metrics = ReturnType<typeof createMetrics>
