// Stampede demo storefront: plain DOM, no framework, no build step. Every number comes from /api.
/* global crypto, document, localStorage, fetch, setTimeout, setInterval, EventSource, URLSearchParams, location */
const TOKEN_KEY = 'stampede.token'
const MAX_SALES = 3 // each live card holds one SSE connection; browsers allow ~6 per host over HTTP/1.1
const $ = (id) => document.getElementById(id)
const money = new Intl.NumberFormat('en-US', { style: 'currency', currency: 'USD' })
const dollars = (cents) => money.format(cents / 100)
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const uuid = () =>
  crypto.randomUUID?.() ?? // only in secure contexts; the fallback covers plain http on a LAN address
  '10000000-1000-4000-8000-100000000000'.replace(/[018]/g, (c) =>
    (c ^ (crypto.getRandomValues(new Uint8Array(1))[0] & (15 >> (c / 4)))).toString(16),
  )

/** Builds an element: h('p', { class: 'x', onclick }, 'text', child). Text is never parsed as HTML. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v)
    else if (v === true) el.setAttribute(k, '')
    else if (v !== false && v != null) el.setAttribute(k, v)
  }
  el.append(...children.flat().filter((c) => c != null && c !== false))
  return el
}

/** The product's picture, or a lettered tile when it has none. */
const thumb = (p, attrs) =>
  p.imageUrl
    ? h('img', { src: p.imageUrl, alt: p.name, width: 400, height: 300, ...attrs })
    : h('div', { class: 'thumb-blank', 'aria-hidden': 'true' }, p.name.slice(0, 1).toUpperCase())

const div = (cls, ...children) => h('div', { class: cls }, ...children)
const btn = (label, onclick, attrs = {}) => h('button', { type: 'button', onclick, ...attrs }, label)

// ---- API client ------------------------------------------------------------------------------
class ApiError extends Error {
  constructor(status, body, retryAfter) {
    super(body?.message ?? `HTTP ${status}`)
    this.status = status
    this.code = body?.code ?? (status === 0 ? 'NETWORK' : 'HTTP_' + status)
    this.retryAfter = retryAfter
  }
}

let guestRequest = null
let onNewGuest = () => {} // set below: reload what belonged to the old identity
function token() {
  const saved = localStorage.getItem(TOKEN_KEY)
  if (saved) return saved
  guestRequest ??= fetch('/api/auth/guest', { method: 'POST' })
    .then(async (res) => {
      const body = await res.json().catch(() => null)
      if (!res.ok) throw new ApiError(res.status, body)
      localStorage.setItem(TOKEN_KEY, body.token)
      return body.token
    })
    .finally(() => (guestRequest = null))
  return guestRequest
}

/** fetch + JSON + Bearer token; a 401 fetches a fresh guest token and tries once more. */
async function api(path, { method = 'GET', body, headers = {} } = {}, isRetry = false) {
  const sent = await token()
  const init = { method, headers: { ...headers, authorization: `Bearer ${sent}` } }
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json'
    init.body = JSON.stringify(body)
  }
  let res
  try {
    res = await fetch(path, init)
  } catch {
    throw new ApiError(0, { message: 'The network failed; check your connection' })
  }
  if (res.status === 401 && !isRetry) {
    // Expired or foreign token: become a new guest (unless a parallel call already did) and retry once.
    if (localStorage.getItem(TOKEN_KEY) === sent) {
      localStorage.removeItem(TOKEN_KEY)
      setTimeout(() => onNewGuest())
    }
    return api(path, { method, body, headers }, true)
  }
  const data = await res.json().catch(() => null)
  if (!res.ok) throw new ApiError(res.status, data, Number(res.headers.get('retry-after')) || 0)
  return { data, res }
}

/** A POST with one Idempotency-Key per click, reused when the answer is unknown or "try again". */
async function postOnce(path, body) {
  const key = uuid()
  for (let attempt = 1; ; attempt++) {
    try {
      return await api(path, { method: 'POST', body, headers: { 'idempotency-key': key } })
    } catch (err) {
      const unsure = err.status === 0 || err.status === 503 || err.code === 'IDEMPOTENCY_KEY_IN_USE'
      if (!unsure || attempt >= 3) throw err
      await sleep((err.retryAfter || attempt) * 1000)
    }
  }
}

// ---- toasts ----------------------------------------------------------------------------------
function toast(text, kind = 'info') {
  const el = h('div', { class: `toast ${kind}` }, text)
  $('toasts').append(el)
  setTimeout(() => el.remove(), kind === 'error' ? 6000 : 4000)
}
const fail = (err) => toast(`${err.message} (${err.code})`, 'error')

// ---- products (fetched once each, shared by sales, orders) -----------------------------------
const products = new Map()
function product(id) {
  if (!products.has(id)) {
    const p = api(`/api/products/${id}`).then((r) => r.data)
    p.catch(() => products.delete(id))
    products.set(id, p)
  }
  return products.get(id)
}

// ---- flash sales -----------------------------------------------------------------------------
const RANK = { active: 0, upcoming: 1, sold_out: 2, ended: 3 }
const LABEL = { active: 'Live', upcoming: 'Upcoming', sold_out: 'Sold out', ended: 'Ended' }
const saleCards = new Map() // saleId -> { sale, els }

/** The server's status, moved on by the clock when a window opens or closes between events. */
function statusOf(sale) {
  const now = Date.now()
  if (now >= Date.parse(sale.endsAt)) return 'ended'
  if (sale.status === 'upcoming' && now >= Date.parse(sale.startsAt)) return 'active'
  return sale.status
}

function duration(ms) {
  const s = Math.max(0, Math.floor(ms / 1000))
  const [d, hh, mm, ss] = [Math.floor(s / 86400), Math.floor(s / 3600) % 24, Math.floor(s / 60) % 60, s % 60]
  const pad = (n) => String(n).padStart(2, '0')
  return (d ? `${d}d ` : '') + `${pad(hh)}:${pad(mm)}:${pad(ss)}`
}

async function loadSales() {
  const { data } = await api('/api/sales')
  const shown = data.items
    .filter((s) => statusOf(s) !== 'ended')
    .sort((a, b) => RANK[statusOf(a)] - RANK[statusOf(b)] || b.id - a.id)
    .slice(0, MAX_SALES)
  const others = data.items.length - shown.length
  $('sales-note').textContent = others > 0 ? `${shown.length} shown of ${data.items.length}` : ''
  $('sales').replaceChildren(
    ...(shown.length ? [] : [h('p', { class: 'muted' }, 'No flash sale right now.')]),
  )
  for (const sale of shown) $('sales').append(saleCard(sale))
}

function saleCard(sale) {
  const els = {
    name: h('h3', {}, sale.productName ?? `Product ${sale.productId}`),
    img: h('div', { class: 'thumb-blank' }),
    regular: h('s', { class: 'muted' }),
    badge: h('span', { class: 'badge' }),
    clock: h('span', { class: 'clock' }),
    bar: h('div', { class: 'bar-fill' }),
    left: h('span'),
    buy: btn('Buy now', () => buy(sale.id)),
  }
  const prices = h('p', { class: 'prices' }, h('strong', {}, dollars(sale.priceCents)), ' ', els.regular)
  const card = h(
    'article',
    { class: 'card sale', 'data-sale-id': sale.id },
    div('sale-top', els.img, div('', els.badge, els.name, prices)),
    div('bar', els.bar),
    h('p', { class: 'row' }, els.left, els.clock),
    h('p', { class: 'row muted' }, `Limit ${sale.perUserLimit} per customer`, els.buy),
  )
  saleCards.set(sale.id, { sale, els })
  product(sale.productId)
    .then((p) => {
      els.name.textContent = p.name
      els.regular.textContent = dollars(p.priceCents)
      els.img.replaceWith((els.img = thumb(p)))
    })
    .catch(() => {})
  paintSale(sale.id)
  subscribe(sale.id)
  return card
}

function paintSale(id) {
  const { sale, els } = saleCards.get(id)
  const status = sale.remaining === 0 && statusOf(sale) === 'active' ? 'sold_out' : statusOf(sale)
  els.badge.textContent = LABEL[status]
  els.badge.className = `badge ${status}`
  els.bar.style.width = `${(100 * sale.remaining) / sale.unitsTotal}%`
  els.left.textContent = `${sale.remaining} of ${sale.unitsTotal} left`
  const start = Date.parse(sale.startsAt) - Date.now()
  const end = Date.parse(sale.endsAt) - Date.now()
  els.clock.textContent =
    status === 'upcoming'
      ? `Starts in ${duration(start)}`
      : status === 'ended'
        ? 'Ended'
        : `Ends in ${duration(end)}`
  if (!els.buy.dataset.busy) els.buy.disabled = status !== 'active' || Date.now() < (sale.coolUntil ?? 0)
}

function subscribe(id) {
  const source = new EventSource(`/api/sales/${id}/events`)
  source.addEventListener('sale', (event) => {
    const numbers = JSON.parse(event.data)
    const entry = saleCards.get(numbers.saleId)
    if (!entry) return
    Object.assign(entry.sale, { remaining: numbers.remaining, status: numbers.status })
    paintSale(numbers.saleId)
  })
  // EventSource reconnects by itself after a drop; the first event on reconnect carries fresh numbers.
}

async function buy(id) {
  const { sale, els } = saleCards.get(id)
  els.buy.dataset.busy = '1'
  els.buy.disabled = true
  els.buy.textContent = 'Buying…'
  try {
    await postOnce(`/api/sales/${id}/purchase`, { quantity: 1 })
    toast('Reserved! Pay within 10 min', 'success')
    loadOrders().catch(() => {})
  } catch (err) {
    if (err.code === 'SOLD_OUT') toast('Sold out — every unit is taken', 'error')
    else if (err.code === 'RATE_LIMITED') {
      const wait = err.retryAfter || 1
      sale.coolUntil = Date.now() + wait * 1000
      toast(`Too many requests — try again in ${wait}s`, 'error')
    } else if (err.code === 'PER_USER_LIMIT') toast(`${err.message} (limit ${sale.perUserLimit})`, 'error')
    else fail(err)
  } finally {
    delete els.buy.dataset.busy
    els.buy.textContent = 'Buy now'
    paintSale(id)
  }
}

// ---- catalogue -------------------------------------------------------------------------------
let nextCursor = null
async function loadCatalog() {
  const query = new URLSearchParams({ limit: '24' })
  if (nextCursor) query.set('cursor', nextCursor)
  const { data } = await api(`/api/products?${query}`)
  for (const p of data.items) {
    products.set(p.id, Promise.resolve(p))
    const stock = p.available > 0 ? `${p.available} available` : 'Out of stock'
    $('catalog').append(
      h(
        'article',
        { class: 'card product' },
        thumb(p, { loading: 'lazy' }),
        h('h3', {}, p.name),
        h(
          'p',
          { class: 'row' },
          h('strong', {}, dollars(p.priceCents)),
          h('span', { class: 'muted' }, stock),
        ),
        btn('Add to cart', () => addToCart(p), { class: 'secondary', disabled: p.available <= 0 }),
      ),
    )
  }
  nextCursor = data.nextCursor
  $('more').hidden = !nextCursor
}

// ---- cart ------------------------------------------------------------------------------------
let cart = { items: [], totalCents: 0, version: 0 }
let etag = null

function keepCart({ data, res }) {
  cart = data
  etag = res.headers.get('etag') ?? `"${data.version}"`
  paintCart()
}
const loadCart = async () => keepCart(await api('/api/cart'))

async function setQuantity(productId, quantity) {
  if (!etag) await loadCart()
  const path = `/api/cart/items/${productId}`
  const headers = { 'if-match': etag }
  try {
    keepCart(
      await (quantity > 0
        ? api(path, { method: 'PUT', body: { quantity }, headers })
        : api(path, { method: 'DELETE', headers })),
    )
    return true
  } catch (err) {
    if (err.status === 412 || err.status === 428) {
      await loadCart()
      toast('Your cart changed in another tab — here it is now; try again', 'error')
    } else fail(err)
    return false
  }
}

async function addToCart(p) {
  const line = cart.items.find((i) => i.productId === p.id)
  if (await setQuantity(p.id, (line?.quantity ?? 0) + 1)) toast(`${p.name} is in your cart`)
}

function paintCart() {
  $('cart-count').textContent = cart.items.reduce((n, i) => n + i.quantity, 0)
  $('cart-total').textContent = dollars(cart.totalCents)
  $('checkout').disabled = cart.items.length === 0
  $('cart-items').replaceChildren(
    ...(cart.items.length ? [] : [h('li', { class: 'muted' }, 'Your cart is empty.')]),
    ...cart.items.map((i) => {
      const step = (label, by, name) =>
        btn(label, () => setQuantity(i.productId, i.quantity + by), { class: 'icon', 'aria-label': name })
      const each = h('small', { class: 'muted' }, ` ${dollars(i.unitPriceCents)} each`)
      return h(
        'li',
        { class: 'line' },
        h('span', { class: 'grow' }, i.name, each),
        h(
          'span',
          { class: 'stepper' },
          step('−', -1, 'One less'),
          h('span', {}, String(i.quantity)),
          step('+', +1, 'One more'),
        ),
        h('strong', {}, dollars(i.lineTotalCents)),
      )
    }),
  )
}

async function checkout() {
  $('checkout').disabled = true
  try {
    await postOnce('/api/checkout')
    toast('Order reserved — pay within 10 min', 'success')
    await Promise.all([loadCart(), loadOrders()])
  } catch (err) {
    fail(err)
    paintCart()
  }
}

// ---- orders ----------------------------------------------------------------------------------
let orders = []
async function loadOrders() {
  orders = (await api('/api/orders?limit=20')).data.items
  paintOrders()
}

async function orderAction(order, action) {
  try {
    const path = `/api/orders/${order.id}/${action}`
    await (action === 'pay' ? postOnce(path) : api(path, { method: 'POST' }))
    toast(action === 'pay' ? 'Paid — thank you!' : 'Order cancelled, stock released', 'success')
  } catch (err) {
    fail(err)
  }
  await loadOrders().catch(fail)
}

function paintOrders() {
  $('orders').replaceChildren(
    ...(orders.length ? [] : [h('li', { class: 'muted' }, 'No orders yet.')]),
    ...orders.map((o) => {
      const what = h('span', { class: 'grow' }, `${o.items.reduce((n, i) => n + i.quantity, 0)} item(s)`)
      Promise.all(o.items.map((i) => product(i.productId).then((p) => `${i.quantity}× ${p.name}`)))
        .then((names) => (what.textContent = names.join(', ')))
        .catch(() => {})
      const actions = div(
        'order-foot',
        h('small', { class: 'muted', 'data-expires': o.expiresAt }),
        h(
          'span',
          { class: 'actions' },
          btn('Pay', () => orderAction(o, 'pay')),
          btn('Cancel', () => orderAction(o, 'cancel'), { class: 'secondary' }),
        ),
      )
      return h(
        'li',
        { class: 'line order' },
        h('span', { class: `badge ${o.status}` }, o.status),
        what,
        h('strong', {}, dollars(o.totalCents)),
        o.status === 'reserved' && actions,
      )
    }),
  )
  tick()
}

// ---- clock, drawer, start --------------------------------------------------------------------
function tick() {
  for (const id of saleCards.keys()) paintSale(id)
  for (const el of document.querySelectorAll('[data-expires]')) {
    const left = Date.parse(el.dataset.expires) - Date.now()
    el.textContent = left > 0 ? `pay within ${duration(left).replace(/^00:/, '')}` : 'expired'
  }
}

function toggleDrawer(open = $('drawer').hidden) {
  $('drawer').hidden = !open
  $('cart-toggle').setAttribute('aria-expanded', String(open))
  if (open) loadOrders().catch(fail)
}

$('cart-toggle').addEventListener('click', () => toggleDrawer())
$('drawer-close').addEventListener('click', () => toggleDrawer(false))
$('checkout').addEventListener('click', checkout)
$('more').addEventListener('click', () => loadCatalog().catch(fail))
document.addEventListener('keydown', (e) => e.key === 'Escape' && toggleDrawer(false))
setInterval(tick, 1000)
onNewGuest = () => {
  toast('Your session ended: you continue as a new guest')
  loadCart().catch(fail)
  if (!$('drawer').hidden) loadOrders().catch(fail)
}

try {
  await token()
} catch (err) {
  fail(err) // every call below asks for a guest token again
}
await Promise.all([
  loadSales().catch((err) => {
    $('sales').replaceChildren(h('p', { class: 'muted' }, 'Flash sales are unavailable right now.'))
    fail(err)
  }),
  loadCatalog().catch(fail),
  loadCart().catch(fail),
])
if (location.hash === '#cart') toggleDrawer(true)
