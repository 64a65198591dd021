import { PG, pgErrorCode, withTransaction } from '../db/transaction.js'
import { NotFoundError, PreconditionFailedError, PreconditionRequiredError } from '../errors.js'
import type { PoolClient } from 'pg'
import type { Db } from '../db/pool.js'
import {
  bumpCartVersionIfMatches,
  deleteCartItem,
  findCart,
  upsertCartItem,
  type Cart,
} from './cart.repository.js'

/** The ETag of a cart is its version, quoted as RFC 9110 wants: `"7"`. */
export const etagOf = (cart: Cart) => `"${cart.version}"`

/** Reads the version out of an If-Match value (`"7"` or `W/"7"`); 428 when absent, 412 when unusable. */
export function versionFromIfMatch(ifMatch: string | undefined): number {
  if (ifMatch === undefined) throw new PreconditionRequiredError()
  const match = /^(?:W\/)?"(\d{1,15})"$/.exec(ifMatch.trim())
  if (!match?.[1]) throw new PreconditionFailedError()
  return Number(match[1])
}

export function createCart(deps: { db: Db }) {
  const { db } = deps

  // A user's own cart is read from the primary: right after a write they must see it (read-your-writes).
  const getCart = (userId: string) => findCart(db.primary, userId)

  async function writeIfMatches(
    userId: string,
    ifMatch: string | undefined,
    write: (tx: PoolClient) => Promise<void>,
  ) {
    const expected = versionFromIfMatch(ifMatch)
    await withTransaction(db.primary, async (tx) => {
      if (!(await bumpCartVersionIfMatches(tx, userId, expected))) throw new PreconditionFailedError()
      await write(tx)
    })
    return getCart(userId)
  }

  return {
    getCart,

    setItem(userId: string, productId: number, quantity: number, ifMatch: string | undefined): Promise<Cart> {
      return writeIfMatches(userId, ifMatch, async (tx) => {
        try {
          await upsertCartItem(tx, userId, productId, quantity)
        } catch (err) {
          if (pgErrorCode(err) === PG.foreignKeyViolation) throw new NotFoundError(`product ${productId}`)
          throw err
        }
      })
    },

    removeItem(userId: string, productId: number, ifMatch: string | undefined): Promise<Cart> {
      return writeIfMatches(userId, ifMatch, async (tx) => {
        if (!(await deleteCartItem(tx, userId, productId)))
          throw new NotFoundError(`product ${productId} in the cart`)
      })
    },
  }
}

export type CartService = ReturnType<typeof createCart>
