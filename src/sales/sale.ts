import type { FromSchema } from 'json-schema-to-ts'
import type { saleSchema } from './sale.schemas.js'

// One sale, declared once: its API schema (saleSchema) is the declaration, and every other shape of a
// sale is derived from it here.

/** A sale as a page shows it: the type of the API's answer, derived from its schema. */
export type Sale = FromSchema<typeof saleSchema>

/** upcoming | active | sold_out | ended: the schema's enum. */
export type SaleStatus = Sale['status']

/** What never changes once a sale exists (there is no sale update): cached like a product. */
export type SaleFacts = Omit<Sale, 'status' | 'remaining'>

/**
 * A sale as Postgres holds it: its facts, its window as Dates, and its stock row's numbers. `available`
 * is the authority, but read from the replica it may lag (the API's `remaining` reads the purchase path).
 */
export type StoredSale = Required<Omit<SaleFacts, 'startsAt' | 'endsAt'>> & {
  startsAt: Date
  endsAt: Date
  available: number
  reserved: number
  sold: number
  version: number
}

/** The facts of a stored sale, as the API writes them (its window as ISO text). */
export const saleFactsOf = ({
  available: _a,
  reserved: _r,
  sold: _s,
  version: _v,
  ...sale
}: StoredSale): SaleFacts => ({
  ...sale,
  startsAt: sale.startsAt.toISOString(),
  endsAt: sale.endsAt.toISOString(),
})

/** A sale's status from its window and the units on offer; the window's end is exclusive. */
export function saleStatus(
  sale: { startsAt: Date | string; endsAt: Date | string },
  available: number,
  now = Date.now(),
): SaleStatus {
  if (now < new Date(sale.startsAt).getTime()) return 'upcoming'
  if (now >= new Date(sale.endsAt).getTime()) return 'ended'
  return available > 0 ? 'active' : 'sold_out'
}
