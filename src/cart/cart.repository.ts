import type { Queryable } from '../db/transaction.js'

export interface CartLine {
  productId: number
  name: string
  quantity: number
  unitPriceCents: number
  lineTotalCents: number
}

export interface Cart {
  /** Bumped by every write; the ETag clients send back in If-Match. */
  version: number
  items: CartLine[]
  totalCents: number
}

interface CartLineRow {
  product_id: number
  name: string
  quantity: number
  price_cents: number
}

/** The cart with current server prices. A user who never wrote to the cart has version 0 and no items. */
export async function findCart(db: Queryable, userId: string): Promise<Cart> {
  // Sequential on purpose: `db` may be a transaction client, which runs one query at a time.
  const version = await db.query<{ version: number }>('SELECT version FROM carts WHERE user_id = $1', [
    userId,
  ])
  const lines = await db.query<CartLineRow>(
    `SELECT c.product_id, p.name, c.quantity, p.price_cents
       FROM cart_items c JOIN products p ON p.id = c.product_id
      WHERE c.user_id = $1 ORDER BY c.product_id`,
    [userId],
  )
  const items = lines.rows.map((row) => ({
    productId: row.product_id,
    name: row.name,
    quantity: row.quantity,
    unitPriceCents: row.price_cents,
    lineTotalCents: row.quantity * row.price_cents,
  }))
  return {
    version: version.rows[0]?.version ?? 0,
    items,
    totalCents: items.reduce((sum, item) => sum + item.lineTotalCents, 0),
  }
}

// Concurrency: optimistic concurrency at the HTTP level. The write only happens if the cart is still
// at the version the client read (its If-Match); two tabs editing one cart cannot silently overwrite
// each other. The row lock this UPDATE takes also serialises writes and checkouts of one cart.
/** Bumps the cart's version if it is still `expected`; `false` when somebody changed it meanwhile. */
export async function bumpCartVersionIfMatches(
  tx: Queryable,
  userId: string,
  expected: number,
): Promise<boolean> {
  await tx.query('INSERT INTO carts (user_id) VALUES ($1) ON CONFLICT (user_id) DO NOTHING', [userId])
  const { rowCount } = await tx.query(
    'UPDATE carts SET version = version + 1, updated_at = now() WHERE user_id = $1 AND version = $2',
    [userId, expected],
  )
  return rowCount === 1
}

export async function upsertCartItem(tx: Queryable, userId: string, productId: number, quantity: number) {
  await tx.query(
    `INSERT INTO cart_items (user_id, product_id, quantity) VALUES ($1, $2, $3)
     ON CONFLICT (user_id, product_id) DO UPDATE SET quantity = excluded.quantity`,
    [userId, productId, quantity],
  )
}

/** `false` when the product was not in the cart. */
export async function deleteCartItem(tx: Queryable, userId: string, productId: number): Promise<boolean> {
  const { rowCount } = await tx.query('DELETE FROM cart_items WHERE user_id = $1 AND product_id = $2', [
    userId,
    productId,
  ])
  return rowCount === 1
}

/**
 * Locks the user's cart row for the rest of the transaction and returns its lines with current prices.
 * Concurrency: two checkouts of one cart (a double click) queue here; the second finds the cart
 * emptied by the first instead of turning the same cart into a second order.
 */
export async function lockCartForCheckout(tx: Queryable, userId: string): Promise<CartLine[]> {
  await tx.query('SELECT 1 FROM carts WHERE user_id = $1 FOR UPDATE', [userId])
  return (await findCart(tx, userId)).items
}

export async function emptyCart(tx: Queryable, userId: string): Promise<void> {
  await tx.query('DELETE FROM cart_items WHERE user_id = $1', [userId])
  await tx.query('UPDATE carts SET version = version + 1, updated_at = now() WHERE user_id = $1', [userId])
}
