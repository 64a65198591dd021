// Small DOM helpers shared by every page: element builder, money and time formats, toasts, busy buttons.
/* global document, setTimeout */
export const $ = (id) => document.getElementById(id)

const money = new Intl.NumberFormat('en-US', { style: 'currency', currency: 'USD' })
export const dollars = (cents) => money.format(cents / 100)

/** Builds an element: h('p', { class: 'x', onclick }, 'text', child). Text is never parsed as HTML. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v)
    else if (v === true) el.setAttribute(k, '')
    else if (v !== false && v != null) el.setAttribute(k, v)
  }
  el.append(...children.flat().filter((c) => c != null && c !== false))
  return el
}

/** Text for screen readers only (a button's product name beside its visible "Add to cart"). */
export const hidden = (text) => h('span', { class: 'sr-only' }, text)

/** A button whose accessible name holds the product: "Add <name> to cart" reads as such, shows "Add to cart". */
export const namedButton = (before, name, after, onclick, attrs = {}) =>
  h('button', { type: 'button', onclick, ...attrs }, before, hidden(` ${name}`), after)

/** A link inside the app (the router handles the click). */
export const link = (href, ...children) => h('a', { href }, ...children)

/** A product picture; when it has none or it fails to load, a lettered tile takes its place. */
export function thumb(name, imageUrl, attrs = {}) {
  const tile = () =>
    h('div', { class: 'thumb thumb-blank', 'aria-hidden': 'true' }, (name || '?').slice(0, 1).toUpperCase())
  if (!imageUrl) return tile()
  const img = h('img', { class: 'thumb', src: imageUrl, alt: '', width: 400, height: 300, ...attrs })
  img.addEventListener('error', () => img.replaceWith(tile()), { once: true })
  return img
}

export function duration(ms) {
  const s = Math.max(0, Math.floor(ms / 1000))
  const [d, hh, mm, ss] = [Math.floor(s / 86400), Math.floor(s / 3600) % 24, Math.floor(s / 60) % 60, s % 60]
  const pad = (n) => String(n).padStart(2, '0')
  return (d ? `${d}d ` : '') + `${pad(hh)}:${pad(mm)}:${pad(ss)}`
}

export const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`

/**
 * A message in the corner toast region (one role="status" region). Toasts take no clicks except their
 * dismiss button, and go away by themselves.
 */
export function toast(text, kind = 'info') {
  const el = h('div', { class: `toast ${kind}` }, h('span', {}, text))
  el.append(
    h(
      'button',
      { type: 'button', class: 'dismiss', 'aria-label': 'Dismiss message', onclick: () => el.remove() },
      '×',
    ),
  )
  $('toasts').append(el)
  while ($('toasts').children.length > 2) $('toasts').firstElementChild.remove()
  setTimeout(() => el.remove(), kind === 'error' ? 7000 : 4500)
}
export const fail = (err) => toast(err.message, 'error')

/**
 * Runs `work` with the button busy: aria-busy and disabled while the request is in flight, so a double
 * click sends one request. `settle` (optional) decides whether the button is enabled afterwards.
 */
export async function busy(button, work, settle) {
  if (button.getAttribute('aria-busy') === 'true') return undefined
  button.setAttribute('aria-busy', 'true')
  button.disabled = true
  try {
    return await work()
  } finally {
    button.removeAttribute('aria-busy')
    button.disabled = settle ? !settle() : false
  }
}

/** Sets the page's one h1 and the document title. */
export function titled(text) {
  document.title = text === 'Stampede shop' ? text : `${text} · Stampede shop`
  return h('h1', {}, text)
}
