import type { FastifyInstance } from 'fastify'
import type { LoadTestUser } from '../../src/auth/load-test-users.js'

/**
 * One unit of a flash sale bought by a load-test user, as a buyer's client sends it (its bearer token,
 * and an `idempotency-key` when given).
 */
export const purchase = (app: FastifyInstance, buyer: LoadTestUser, saleId: number, key?: string) =>
  app.inject({
    method: 'POST',
    url: `/api/sales/${saleId}/purchase`,
    headers: { authorization: `Bearer ${buyer.token}`, ...(key ? { 'idempotency-key': key } : {}) },
    payload: { quantity: 1 },
  })
