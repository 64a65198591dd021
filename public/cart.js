// The cart: its drawer (a modal dialog), its lines and steppers, checkout. Cart writes carry the cart's
// ETag (If-Match) and go one at a time, so two quick clicks in this tab never conflict with each other;
// a 412 then really means another tab changed the cart.
/* global document */
import { api, postOnce } from './api.js'
import { $, busy, dollars, fail, h, plural, toast } from './dom.js'

let cart = { items: [], totalCents: 0, version: 0 }
let etag = null
let shownCount = null
let writes = Promise.resolve()
let navigate = () => {}

export function initCart(options) {
  navigate = options.navigate
  $('cart-toggle').addEventListener('click', () => openDrawer())
  $('drawer-close').addEventListener('click', () => closeDrawer())
  $('drawer-backdrop').addEventListener('click', () => closeDrawer())
  $('checkout').addEventListener('click', () => checkout())
  $('drawer-orders').addEventListener('click', () => closeDrawer(false))
  $('drawer').addEventListener('keydown', trapKeys)
}

function keepCart({ data, res }) {
  cart = data
  etag = res.headers.get('etag') ?? `"${data.version}"`
  paintCart()
}
export const loadCart = async () => keepCart(await api('/api/cart'))
const quantityInCart = (productId) => cart.items.find((i) => i.productId === productId)?.quantity ?? 0

/** Queues a cart write behind the previous one; resolves true when it was applied. */
function setQuantity(productId, quantity) {
  const write = writes.then(async () => {
    if (!etag) await loadCart()
    const path = `/api/cart/items/${productId}`
    const headers = { 'if-match': etag }
    try {
      keepCart(
        await (quantity() > 0
          ? api(path, { method: 'PUT', body: { quantity: quantity() }, headers })
          : api(path, { method: 'DELETE', headers })),
      )
      return true
    } catch (err) {
      if (err.status === 412 || err.status === 428) {
        await loadCart()
        toast('Your cart changed in another tab: here it is now; try again', 'error')
      } else fail(err)
      return false
    }
  })
  writes = write.catch(() => false)
  return write
}

/** "Add <name> to cart": one more of the product (counted when the write runs, not when clicked). */
export async function addToCart(product, button) {
  await busy(button, async () => {
    if (await setQuantity(product.id, () => quantityInCart(product.id) + 1))
      toast(`${product.name} is in your cart`)
  })
}

function paintCart() {
  const count = cart.items.reduce((n, i) => n + i.quantity, 0)
  $('cart-count').textContent = count
  $('cart-toggle').setAttribute('aria-label', `Cart, ${plural(count, 'item')}`)
  if (shownCount !== null && shownCount !== count)
    $('cart-announce').textContent = `Cart: ${plural(count, 'item')}`
  shownCount = count
  $('cart-total').textContent = dollars(cart.totalCents)
  $('checkout').disabled = cart.items.length === 0
  $('cart-items').replaceChildren(
    ...(cart.items.length ? [] : [h('li', { class: 'muted' }, 'Your cart is empty.')]),
    ...cart.items.map((i) => {
      const step = (label, by, name) => {
        const button = h('button', { type: 'button', class: 'icon', 'aria-label': name }, label)
        button.addEventListener('click', () =>
          busy(button, () => setQuantity(i.productId, () => quantityInCart(i.productId) + by)),
        )
        return button
      }
      return h(
        'li',
        { class: 'line' },
        h(
          'span',
          { class: 'grow' },
          i.name,
          h('small', { class: 'muted' }, ` ${dollars(i.unitPriceCents)} each`),
        ),
        h(
          'span',
          { class: 'stepper' },
          step('−', -1, `Remove one ${i.name}`),
          h('span', { class: 'qty' }, String(i.quantity)),
          step('+', +1, `Add one ${i.name}`),
        ),
        h('strong', {}, dollars(i.lineTotalCents)),
      )
    }),
  )
}

async function checkout() {
  await busy(
    $('checkout'),
    async () => {
      try {
        const { data: order } = await postOnce('/api/checkout')
        toast(`Order #${order.number} reserved: pay within 10 minutes`, 'success')
        await loadCart().catch(() => {})
        closeDrawer(false)
        navigate(`/orders/${order.id}`)
      } catch (err) {
        fail(err)
      }
    },
    () => cart.items.length > 0,
  )
}

// ---- the drawer: a modal dialog --------------------------------------------------------------
const isOpen = () => !$('drawer').hidden

function openDrawer() {
  if (isOpen()) return
  $('drawer').hidden = false
  $('drawer-backdrop').hidden = false
  document.body.classList.add('modal-open')
  for (const el of [document.querySelector('header'), $('main')]) el.inert = true
  $('drawer-close').focus()
  loadCart().catch(fail)
}

export function closeDrawer(returnFocus = true) {
  if (!isOpen()) return
  $('drawer').hidden = true
  $('drawer-backdrop').hidden = true
  document.body.classList.remove('modal-open')
  for (const el of [document.querySelector('header'), $('main')]) el.inert = false
  if (returnFocus) $('cart-toggle').focus()
}

function trapKeys(event) {
  if (event.key === 'Escape') {
    event.preventDefault()
    closeDrawer()
    return
  }
  if (event.key !== 'Tab') return
  const focusable = [...$('drawer').querySelectorAll('button:not(:disabled), a[href]')]
  const first = focusable[0]
  const last = focusable.at(-1)
  if (event.shiftKey && document.activeElement === first) {
    event.preventDefault()
    last.focus()
  } else if (!event.shiftKey && document.activeElement === last) {
    event.preventDefault()
    first.focus()
  }
}
