import { readFileSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { REPO_ROOT } from '../../scripts/stack/paths.js'
import { OrderExpiredError, OrderNotCancellableError, OrderNotPayableError } from '../errors.js'
import {
  canPay,
  canTransition,
  newReservedOrder,
  orderFromRow,
  publicOrder,
  whyNotCancellable,
  whyNotPayable,
  type Order,
  type OrderStatus,
} from './order.js'

const STATUSES: OrderStatus[] = ['reserved', 'paid', 'cancelled', 'expired']

const reserved = newReservedOrder({
  id: '1a2b3c4d-0000-4000-8000-000000000000',
  userId: 'u',
  saleId: null,
  expiresAt: '2026-01-01T10:15:00.000Z',
  createdAt: '2026-01-01T10:00:00.000Z',
  items: [
    { productId: 9, quantity: 1, unitPriceCents: 500 },
    { productId: 2, quantity: 3, unitPriceCents: 100 },
  ],
})
const as = (status: OrderStatus): Order => ({ ...reserved, status })

describe('order', () => {
  it('when an order is made, then it is reserved, unpaid, numbered, totalled and its items are in product order', () => {
    expect(reserved).toMatchObject({ number: '1A2B3C4D', status: 'reserved', paidAt: null, totalCents: 800 })
    expect(reserved.items.map((item) => item.productId)).toEqual([2, 9])
  })

  it('when an order moves, then only a reservation moves, to paid, cancelled or expired', () => {
    const moves = STATUSES.flatMap((from) =>
      STATUSES.filter((to) => canTransition(from, to)).map((to) => `${from}->${to}`),
    )
    expect(moves).toEqual(['reserved->paid', 'reserved->cancelled', 'reserved->expired'])
  })

  it('when the repository changes a status, then its conditional UPDATE guards on a status the model lets move there', () => {
    const sql = readFileSync(path.join(REPO_ROOT, 'src/orders/orders.repository.ts'), 'utf8')
    const updates = [...sql.matchAll(/UPDATE orders SET status = '(\w+)'[^`]*?WHERE[^`]*?status = '(\w+)'/g)]
    expect(updates.map((m) => m[1]).sort()).toEqual(['cancelled', 'expired', 'paid'])
    for (const [, to, from] of updates)
      expect(canTransition(from as OrderStatus, to as OrderStatus)).toBe(true)
  })

  it('when a reservation is paid, then it must not have run out of time (its end is exclusive)', () => {
    expect(canPay(reserved, Date.parse('2026-01-01T10:14:59.999Z'))).toBe(true)
    expect(canPay(reserved, Date.parse('2026-01-01T10:15:00.000Z'))).toBe(false)
    expect(canPay(as('paid'), Date.parse('2026-01-01T10:00:00.000Z'))).toBe(false)
    expect(whyNotPayable(reserved)).toBeInstanceOf(OrderExpiredError)
    expect(whyNotPayable(as('expired'))).toBeInstanceOf(OrderExpiredError)
    expect(whyNotPayable(as('cancelled'))).toBeInstanceOf(OrderNotPayableError)
  })

  it('when a cancel finds the order cancelled already, then that is no refusal; any other status is', () => {
    expect(whyNotCancellable(as('cancelled'))).toBeNull()
    expect(whyNotCancellable(as('paid'))).toBeInstanceOf(OrderNotCancellableError)
    expect(whyNotCancellable(as('expired'))).toBeInstanceOf(OrderNotCancellableError)
  })

  it('when an order is read from its row, then the reservation token stays on the server side', () => {
    const stored = orderFromRow({
      id: reserved.id,
      userId: 'u',
      saleId: 7,
      status: 'reserved',
      totalCents: 800,
      expiresAt: new Date(reserved.expiresAt),
      createdAt: new Date(reserved.createdAt),
      paidAt: null,
      reservationToken: 'token',
      items: [{ productId: 2, quantity: 3, unitPriceCents: 100 }],
    })
    expect(stored.reservationToken).toBe('token')
    expect(publicOrder(stored)).toEqual({
      ...reserved,
      saleId: 7,
      items: [{ productId: 2, quantity: 3, unitPriceCents: 100 }],
    })
    expect('reservationToken' in publicOrder(stored)).toBe(false)
  })
})
