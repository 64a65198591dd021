import type { TokenClaims } from '../auth/token-claims.js'
import { RegisteredOnlyError } from '../errors.js'
import type { Sales } from './sales.service.js'

/**
 * Who may buy in a sale, decided before the purchase takes any stock: a sale for registered accounts
 * refuses guests. The buyer's kind is in the token and the sale's flag in its cached facts, so this
 * costs a registered buyer nothing and a guest a lookup in memory.
 */
export function createSaleEligibility(deps: { sales: Pick<Sales, 'isRegisteredOnly'> }) {
  return {
    async assertMayBuy(buyer: TokenClaims, saleId: number): Promise<void> {
      if (buyer.guest && (await deps.sales.isRegisteredOnly(saleId))) throw new RegisteredOnlyError(saleId)
    },
  }
}

export type SaleEligibility = ReturnType<typeof createSaleEligibility>
