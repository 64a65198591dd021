import type { Sale } from './sales.repository.js'

export type SaleStatus = 'upcoming' | 'active' | 'sold_out' | 'ended'

export function saleStatus(
  sale: Pick<Sale, 'startsAt' | 'endsAt'>,
  available: number,
  now = Date.now(),
): SaleStatus {
  if (now < sale.startsAt.getTime()) return 'upcoming'
  if (now >= sale.endsAt.getTime()) return 'ended'
  return available > 0 ? 'active' : 'sold_out'
}
