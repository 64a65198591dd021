import type { LoadRequest } from './load.js'

// The cart steps of a shopper's turn, shared by the checkout scenario and the soak.

/**
 * Puts one unit of the product in the turn's user's cart, with the ETag the cart read before it kept
 * in `context.etag` as If-Match (without one the API answers 428). `context.inCart` says whether the
 * unit went in, so the checkout after it knows whether there is anything to check out.
 */
export function putOneUnitInCart(
  productId: number,
  auth: (context: Record<string, unknown>) => string,
): LoadRequest {
  return {
    method: 'PUT',
    path: `/api/cart/items/${productId}`,
    body: '{"quantity":1}',
    setupRequest: (request, context) => {
      request.headers = {
        authorization: auth(context),
        'content-type': 'application/json',
        ...(typeof context.etag === 'string' && { 'if-match': context.etag }),
      }
      return request
    },
    onResponse: (status, _body, context) => {
      context.inCart = status === 200
    },
  }
}
