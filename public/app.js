// Stampede's demo shop: plain ES modules, no framework, no build step. This file is the router: every
// page is a client-side route (History API, real links), and every URL survives a reload because nginx
// answers unknown paths with index.html.
/* global document, history, location, ResizeObserver, setInterval, URL, URLSearchParams, window */
import { api, currentUser, ensureToken, onIdentityChange, signOut } from './api.js'
import { closeDrawer, initCart, loadCart } from './cart.js'
import { $, busy, fail, h, toast } from './dom.js'
import {
  homePage,
  notFound,
  orderPage,
  ordersPage,
  productPage,
  registerPage,
  salePage,
  searchPage,
  signInPage,
} from './pages.js'
import { clearPainters, tick, watch } from './sales.js'

const ROUTES = [
  [/^\/$/, (ctx) => homePage(ctx)],
  [/^\/search$/, (ctx) => searchPage(ctx)],
  [/^\/products\/(\d{1,9})$/, (ctx, id) => productPage({ ...ctx, id: Number(id) })],
  [/^\/products\/[^/]+$/, () => notFound('Product not found')],
  [/^\/sales\/(\d{1,9})$/, (ctx, id) => salePage({ ...ctx, id: Number(id) })],
  [/^\/sales\/[^/]+$/, () => notFound('Sale not found')],
  [/^\/signin$/, (ctx) => signInPage(ctx)],
  [/^\/register$/, (ctx) => registerPage(ctx)],
  [/^\/orders$/, (ctx) => ordersPage(ctx)],
  [/^\/orders\/([^/]+)$/, (ctx, id) => orderPage({ ...ctx, id })],
]
// Paths the shop does not own: let the browser load them.
const FOREIGN = /^\/(dashboard|docs|api|health|images)(\/|$)/

let categories = []
let returnTo = '/' // where sign-in and registration go back to
let rendering = 0

async function render({ focus = false } = {}) {
  const run = ++rendering
  clearPainters()
  watch([])
  closeDrawer(false)
  const url = new URL(location.href)
  const ctx = {
    params: url.searchParams,
    categories,
    navigate,
    back: () => navigate(returnTo === url.pathname ? '/' : returnTo, { replace: true }),
  }
  paintNav(url)
  const route = ROUTES.find(([pattern]) => pattern.test(url.pathname))
  try {
    if (!route) notFound()
    else await route[1](ctx, ...url.pathname.match(route[0]).slice(1))
  } catch (err) {
    if (run !== rendering) return
    $('main').replaceChildren(h('h1', {}, 'Something went wrong'), h('p', {}, err.message))
    document.title = 'Something went wrong · Stampede shop'
  }
  if (focus && run === rendering) {
    const heading = $('main').querySelector('h1')
    heading?.setAttribute('tabindex', '-1')
    heading?.focus()
  }
}

function navigate(to, { replace = false } = {}) {
  const target = new URL(to, location.href)
  const account = ['/signin', '/register']
  // Remember the page to come back to after signing in or registering.
  if (account.includes(target.pathname) && !account.includes(location.pathname))
    returnTo = location.pathname + location.search
  if (replace) history.replaceState(null, '', target)
  else history.pushState(null, '', target)
  window.scrollTo(0, 0)
  render({ focus: true })
}

// Same-origin links to the shop's own pages are routed here; anything else loads normally.
document.addEventListener('click', (event) => {
  const a = event.target.closest?.('a[href]')
  if (!a || event.defaultPrevented || event.button !== 0) return
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey || a.target) return
  if (a.getAttribute('href').startsWith('#')) return // the skip link
  const url = new URL(a.href)
  if (url.origin !== location.origin || FOREIGN.test(url.pathname)) return
  event.preventDefault()
  navigate(url.pathname + url.search)
})
window.addEventListener('popstate', () => render({ focus: true }))

$('search-form').addEventListener('submit', (event) => {
  event.preventDefault()
  const q = $('search-input').value.trim()
  navigate(q ? `/search?${new URLSearchParams({ q })}` : '/search')
})

// ---- header: categories and the account ------------------------------------------------------
function paintNav(url) {
  const current = url.pathname === '/search' ? url.searchParams.get('category') : null
  $('categories').replaceChildren(
    ...categories.map((c) =>
      h(
        'li',
        {},
        h(
          'a',
          {
            href: `/search?category=${encodeURIComponent(c.slug)}`,
            'aria-current': c.slug === current ? 'page' : null,
          },
          c.name,
        ),
      ),
    ),
  )
  if (url.pathname !== '/search') $('search-input').value = ''
}

function paintAccount() {
  const user = currentUser()
  $('who').hidden = !user
  $('who').textContent = user ? `Signed in as ${user.email}` : ''
  $('signin-link').hidden = Boolean(user)
  $('signout').hidden = !user
}

$('signout').addEventListener('click', () =>
  busy($('signout'), async () => {
    try {
      await signOut()
      toast('Signed out: you continue as a new guest')
    } catch (err) {
      fail(err)
    }
  }),
)

// Whoever the shopper is now (signed in, out, or a new guest after a rejected token): header, cart and
// the page's per-customer parts follow.
// (At most one re-render per 2 s: an API that rejected every token must not start a loop of guests.)
let lastIdentityRender = 0
onIdentityChange(() => {
  paintAccount()
  loadCart().catch(fail)
  if (['/signin', '/register'].includes(location.pathname) || Date.now() - lastIdentityRender < 2000) return
  lastIdentityRender = Date.now()
  render()
})

document.addEventListener('keydown', (event) => event.key === 'Escape' && closeDrawer())
// The toasts sit just below the sticky header, whose height changes with the viewport's width.
const header = document.querySelector('header')
new ResizeObserver(() =>
  document.documentElement.style.setProperty('--header-height', `${header.offsetHeight}px`),
).observe(header)
setInterval(tick, 1000)

// ---- start -----------------------------------------------------------------------------------
initCart({ navigate })
paintAccount()
try {
  await ensureToken()
} catch (err) {
  fail(err) // every call below asks for a guest token again
}
await api('/api/categories')
  .then(({ data }) => (categories = data.items))
  .catch(() => {}) // the header shows no category menu then
await Promise.all([render(), loadCart().catch(fail)])
