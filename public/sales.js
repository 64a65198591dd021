// Flash sales on a page: their cards, the one live stream for all of them, the shopper's allowance.
/* global EventSource, window, crypto, TextEncoder, btoa */
import { api, ApiError, postOnce } from './api.js'
import { dollars, duration, h, hidden, link, namedButton, plural, thumb, toast, fail, busy } from './dom.js'

const RANK = { active: 0, upcoming: 1, sold_out: 2, ended: 3 }
export const LABEL = { active: 'Live', upcoming: 'Upcoming', sold_out: 'Sold out', ended: 'Ended' }
const MAX_STREAMED = 50 // the most ids one stream takes (the API's limit)

const sales = new Map() // saleId -> sale (as /api/sales shows it, kept current by the stream)
const held = new Map() // saleId -> units the shopper holds
const painters = new Map() // saleId -> Set of functions that repaint what shows that sale
const places = new Map() // saleId -> the shopper's place in the sale's waiting room (GET /api/sales/:id/queue)
const progress = new Map() // saleId -> the waiting room's progress, from the stream (event `queue`)

/** The server's status, moved on by the clock when a window opens or closes between events. */
export function statusOf(sale) {
  const now = Date.now()
  if (now >= Date.parse(sale.endsAt)) return 'ended'
  if (sale.remaining <= 0) return 'sold_out'
  if (now < Date.parse(sale.startsAt)) return 'upcoming'
  return 'active'
}

/**
 * Live and upcoming sales, with the clock's moves since the API answered: live ones with units left first
 * (the latest to open first), then upcoming ones (soonest first), then sold-out ones. Ended sales are left
 * out. Within a status the API's order stands (the sort is stable).
 */
export async function loadSales() {
  const { data } = await api('/api/sales')
  for (const sale of data.items) sales.set(sale.id, sale)
  const rank = (s) => RANK[statusOf(s)]
  return data.items.filter((s) => statusOf(s) !== 'ended').sort((a, b) => rank(a) - rank(b))
}

export async function loadSale(id) {
  const { data } = await api(`/api/sales/${id}`)
  sales.set(data.id, data)
  return data
}

// ---- the page's one stream -------------------------------------------------------------------
// One EventSource for every sale the page shows. A browser opens at most six HTTP/1.1 connections per
// host; a stream per card would take them all with two tabs open, and no API call would get through.
let source = null
let watched = ''

/** Streams these sales' numbers (replacing the page's previous stream); [] closes it. */
export function watch(ids) {
  const key = ids.slice(0, MAX_STREAMED).join(',')
  if (key === watched && source) return
  source?.close()
  source = null
  watched = key
  if (key) open()
}

function open() {
  source = new EventSource(`/api/sales/events?ids=${watched}`)
  source.addEventListener('sale', (event) => {
    const numbers = JSON.parse(event.data)
    const sale = sales.get(numbers.saleId)
    if (!sale) return
    Object.assign(sale, { remaining: numbers.remaining, status: numbers.status })
    repaint(numbers.saleId)
  })
  source.addEventListener('queue', (event) => {
    const room = JSON.parse(event.data)
    progress.set(room.saleId, { ...progress.get(room.saleId), ...room })
    const mine = places.get(room.saleId)
    if (room.state === 'closed' && mine?.status === 'waiting') places.set(room.saleId, { status: 'sold_out' })
    else if (mine?.status === 'waiting' && room.admitted >= mine.place) void refreshPlace(room.saleId)
    repaint(room.saleId)
  })
  // EventSource reconnects by itself after a drop; the first event after it carries fresh numbers.
}

// A page kept in the back/forward cache must not keep its stream (and its connection) open.
window.addEventListener('pagehide', () => {
  source?.close()
  source = null
})
window.addEventListener('pageshow', (event) => {
  if (event.persisted && watched && !source) open()
})

// ---- allowance -------------------------------------------------------------------------------
/** Units the shopper holds in these sales (per-user data: never in the shared sale list). */
export async function loadHoldings(ids) {
  for (const id of ids) held.set(id, 0)
  for (let i = 0; i < ids.length; i += MAX_STREAMED) {
    const chunk = ids.slice(i, i + MAX_STREAMED)
    const { data } = await api(`/api/sales/mine?ids=${chunk.join(',')}`)
    for (const item of data.items) held.set(item.saleId, item.units)
  }
  for (const id of ids) repaint(id)
}

// ---- waiting rooms ---------------------------------------------------------------------------
/** The shopper's place in each of these sales' waiting rooms (sales without one are skipped). */
export async function loadPlaces(ids) {
  await Promise.all(ids.filter((id) => sales.get(id)?.queue).map((id) => refreshPlace(id)))
}

const refreshing = new Map() // saleId -> the GET under way (one at a time per sale)
function refreshPlace(id) {
  if (!refreshing.has(id)) {
    const request = api(`/api/sales/${id}/queue`)
      .then(({ data }) => {
        places.set(id, data)
        repaint(id)
      })
      .finally(() => refreshing.delete(id))
    refreshing.set(id, request)
  }
  return refreshing.get(id)
}

/**
 * Solves a waiting room's proof of work (ALTCHA v1: the number whose SHA-256 after the salt is the
 * challenge) and returns it as the payload the API takes. A person's browser spends a moment on it; a bot
 * spends as much for each of its accounts.
 */
async function solve({ algorithm, challenge, maxnumber, salt, signature }) {
  const encoder = new TextEncoder()
  for (let number = 0; number <= maxnumber; number++) {
    const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', encoder.encode(salt + number)))
    const hex = Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('')
    if (hex === challenge) return btoa(JSON.stringify({ algorithm, challenge, number, salt, signature }))
  }
  throw new Error("the waiting room's puzzle has no answer")
}

async function join(id, button) {
  await busy(button, async () => {
    try {
      let body
      if (sales.get(id)?.queueDifficulty > 0) {
        const { data: challenge } = await api(`/api/sales/${id}/queue/challenge`)
        if (challenge) {
          places.set(id, { status: 'solving' })
          repaint(id)
          body = { proof: await solve(challenge) }
        }
      }
      const { data } = await api(`/api/sales/${id}/queue`, { method: 'POST', body })
      places.set(id, data)
    } catch (err) {
      if (places.get(id)?.status === 'solving') places.delete(id)
      if (!(err instanceof ApiError)) throw err
      if (err.code === 'SOLD_OUT') places.set(id, { status: 'sold_out' })
      else if (err.status === 403) toast('This sale is for registered customers: sign in to queue', 'error')
      else fail(err)
    }
  })
  repaint(id)
}

/** What the shopper's place says now, in words; '' for a sale without a waiting room. */
function queueText(sale) {
  if (!sale.queue) return ''
  const mine = places.get(sale.id)
  const room = progress.get(sale.id)
  switch (mine?.status) {
    case 'waiting': {
      if (!mine.drawn && sale.queue === 'raffle' && statusOf(sale) === 'upcoming')
        return `You are in the draw (${plural(room?.places ?? mine.places, 'place')}): the order is drawn when the sale opens`
      const ahead = Math.max(0, mine.place - 1 - (room?.admitted ?? mine.admitted))
      const rate = room?.perSecond ?? 0
      const wait = rate > 0 ? `, about ${duration((ahead / rate) * 1000)}` : ''
      return `Your place: ${mine.place}. ${plural(ahead, 'buyer')} ahead of you${wait}`
    }
    case 'admitted':
      return mine.bought
        ? 'You bought in your turn'
        : `It's your turn: buy within ${duration(Date.parse(mine.leaseEndsAt) - Date.now())}`
    case 'lapsed':
      return 'Your turn passed without a purchase'
    case 'solving':
      return 'Solving a small puzzle to take your place…'
    case 'sold_out':
      return 'Sold out: every unit is taken'
    default:
      return statusOf(sale) === 'ended' ? '' : 'This sale has a waiting room: join to get your place'
  }
}

const turnOf = (sale) => {
  const mine = places.get(sale.id)
  return mine?.status === 'admitted' && Date.parse(mine.leaseEndsAt) > Date.now() ? mine : null
}

function repaint(id) {
  for (const paint of painters.get(id) ?? []) paint()
}
/** Repaints every shown sale (the countdowns move every second). */
export const tick = () => [...painters.keys()].forEach(repaint)
/** Forgets what the previous page showed. */
export const clearPainters = () => painters.clear()

// ---- a sale's view (card on the home page, or the sale page) ---------------------------------
/**
 * The live parts of a sale: status word, units left, allowance, countdown, Buy button. `onBought`
 * gets the order after a 201.
 */
export function saleParts(id, onBought) {
  const sale = sales.get(id)
  const els = {
    badge: h('span', { class: 'badge' }),
    left: h('span', { class: 'left' }),
    allowance: h('span', { class: 'allowance' }),
    clock: h('span', { class: 'clock' }),
    bar: h('div', { class: 'bar-fill' }),
    soldOut: h('strong', { class: 'sold-out-note' }),
  }
  els.buy = namedButton('Buy', sale.productName, ' now', () => buy(id, els.buy, onBought))
  // A sale with a waiting room: where the shopper stands, and the button that takes a place.
  els.queue = h('p', { class: 'queue-place', role: 'status' })
  els.join = namedButton('Join the queue for', sale.productName, '', () => join(id, els.join))
  const paint = () => {
    const status = statusOf(sale)
    els.badge.textContent = LABEL[status]
    els.badge.className = `badge ${status}`
    els.bar.style.width = `${(100 * Math.max(0, sale.remaining)) / sale.unitsTotal}%`
    els.left.textContent = `${Math.max(0, sale.remaining)} of ${sale.unitsTotal} left`
    els.allowance.textContent = `You hold ${held.get(id) ?? 0} of ${sale.perUserLimit}`
    els.soldOut.textContent = status === 'sold_out' ? 'Sold out' : ''
    els.clock.textContent =
      status === 'upcoming'
        ? `Starts in ${duration(Date.parse(sale.startsAt) - Date.now())}`
        : status === 'ended'
          ? 'Ended'
          : `Ends in ${duration(Date.parse(sale.endsAt) - Date.now())}`
    if (els.buy.getAttribute('aria-busy') !== 'true') els.buy.disabled = !canBuy(sale)
    const text = queueText(sale)
    if (els.queue.textContent !== text) els.queue.textContent = text
    const joinable = sale.queue && !places.get(id)?.status?.match(/waiting|admitted|lapsed|sold_out|solving/)
    els.join.hidden = !joinable || ['ended', 'sold_out'].includes(statusOf(sale))
    els.buy.hidden = Boolean(sale.queue) && !turnOf(sale)
  }
  if (!painters.has(id)) painters.set(id, new Set())
  painters.get(id).add(paint)
  paint()
  return { sale, els }
}

const canBuy = (sale) =>
  statusOf(sale) === 'active' && Date.now() >= (sale.coolUntil ?? 0) && (!sale.queue || turnOf(sale) !== null)

async function buy(id, button, onBought) {
  const sale = sales.get(id)
  await busy(
    button,
    async () => {
      try {
        const turn = turnOf(sale)
        const headers = turn ? { 'waiting-room-admission': turn.admission } : {}
        const { data: order } = await postOnce(`/api/sales/${id}/purchase`, { quantity: 1 }, headers)
        if (turn) places.set(id, { ...turn, bought: true })
        held.set(id, (held.get(id) ?? 0) + 1)
        toast(`Reserved ${sale.productName}: order #${order.number}. Pay within 10 minutes.`, 'success')
        onBought(order)
      } catch (err) {
        if (!(err instanceof ApiError)) throw err
        if (err.code === 'SOLD_OUT') toast('Sold out: every unit is taken', 'error')
        else if (err.code === 'RATE_LIMITED') {
          const wait = err.retryAfter || 1
          sale.coolUntil = Date.now() + wait * 1000
          toast(`Too many requests: try again in ${wait} s`, 'error')
        } else if (err.code === 'PER_USER_LIMIT')
          toast(`You already hold ${sale.perUserLimit} of this sale (the limit per customer)`, 'error')
        else if (err.code === 'NOT_ADMITTED') {
          toast('It is not your turn in the waiting room', 'error')
          void refreshPlace(id)
        } else if (err.status === 403) toast('This sale is for registered customers: sign in to buy', 'error')
        else fail(err)
      }
    },
    () => canBuy(sale),
  )
  repaint(id)
}

/** A card for the home page's "Flash sales" section. */
export function saleCard(id, onBought) {
  const { sale, els } = saleParts(id, onBought)
  const nameId = `sale-${id}-name`
  const prices = h(
    'p',
    { class: 'prices' },
    h('strong', {}, dollars(sale.priceCents)),
    sale.regularPriceCents ? [' ', h('s', { class: 'muted' }, dollars(sale.regularPriceCents))] : [],
  )
  return h(
    'article',
    { class: 'card sale', 'aria-labelledby': nameId },
    h(
      'div',
      { class: 'sale-top' },
      thumb(sale.productName, sale.productImageUrl),
      h('div', { class: 'sale-head' }, els.badge, h('h3', { id: nameId }, sale.productName), prices),
    ),
    h('div', { class: 'bar', 'aria-hidden': 'true' }, els.bar),
    h('p', { class: 'row wrap' }, els.left, els.soldOut, els.clock),
    h(
      'p',
      { class: 'row wrap muted' },
      els.allowance,
      sale.registeredOnly ? 'Registered customers only' : null,
    ),
    sale.queue ? els.queue : null,
    h(
      'p',
      { class: 'row wrap' },
      link(`/sales/${id}`, 'Sale page', hidden(` for ${sale.productName}`)),
      els.join,
      els.buy,
    ),
  )
}
