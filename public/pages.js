// The shop's pages. Each renders into <main> and returns; the router (app.js) picks one per URL.
/* global URLSearchParams, setInterval, clearInterval */
import { api, ApiError, currentUser, postOnce, product, register, rememberProduct, signIn } from './api.js'
import { addToCart } from './cart.js'
import {
  $,
  busy,
  dollars,
  duration,
  fail,
  h,
  link,
  namedButton,
  plural,
  thumb,
  titled,
  toast,
} from './dom.js'
import {
  LABEL,
  loadHoldings,
  loadPlaces,
  loadSale,
  loadSales,
  saleCard,
  saleParts,
  statusOf,
  watch,
} from './sales.js'

const PAGE_SIZE = 24
const STATUS_WORD = { reserved: 'Reserved', paid: 'Paid', cancelled: 'Cancelled', expired: 'Expired' }

const section = (title, ...children) => {
  const id = `section-${title.toLowerCase().replace(/\W+/g, '-')}`
  return h('section', { 'aria-labelledby': id }, h('h2', { id }, title), ...children)
}

// ---- product cards (catalogue and search results) --------------------------------------------
function productCard(p) {
  rememberProduct(p)
  const stock = p.available > 0 ? `${p.available} available` : 'Out of stock'
  const nameId = `product-${p.id}-name`
  const add = namedButton('Add', p.name, ' to cart', () => addToCart(p, add), {
    class: 'secondary',
    disabled: p.available <= 0,
  })
  return h(
    'article',
    { class: 'card product', 'aria-labelledby': nameId },
    thumb(p.name, p.imageUrl, { loading: 'lazy' }),
    h('h3', { id: nameId }, link(`/products/${p.id}`, p.name)),
    h(
      'p',
      { class: 'row wrap' },
      h('strong', {}, dollars(p.priceCents)),
      h('span', { class: 'muted' }, stock),
    ),
    add,
  )
}

/** A grid of product cards for `query` (URLSearchParams), with a "More" button while pages remain. */
function productGrid(query, { empty }) {
  const grid = h('div', { class: 'grid catalog' })
  const status = h('p', { class: 'muted' })
  const more = h('button', { type: 'button', class: 'secondary more', hidden: true }, 'More')
  let cursor = null
  const loadPage = async () => {
    const params = new URLSearchParams(query)
    params.set('limit', String(PAGE_SIZE))
    if (cursor) params.set('cursor', cursor)
    const { data } = await api(`/api/products?${params}`)
    grid.append(...data.items.map(productCard))
    cursor = data.nextCursor
    more.hidden = !cursor
    status.textContent = grid.children.length === 0 ? empty : ''
  }
  more.addEventListener('click', () =>
    busy(
      more,
      () => loadPage().catch(fail),
      () => true,
    ),
  )
  return { el: h('div', {}, status, grid, more), loadPage }
}

// ---- / ---------------------------------------------------------------------------------------
const SALES_AT_ONCE = 12 // cards drawn before "More flash sales"; a load test can leave hundreds live

export async function homePage({ navigate }) {
  const salesGrid = h('div', { class: 'grid sales' }, h('p', { class: 'muted' }, 'Loading sales…'))
  const moreSales = h('button', { type: 'button', class: 'secondary more', hidden: true }, 'More flash sales')
  const catalogue = productGrid(new URLSearchParams(), { empty: 'The catalogue is empty.' })
  $('main').replaceChildren(
    titled('Stampede shop'),
    section('Flash sales', salesGrid, moreSales),
    section('Catalogue', catalogue.el),
  )
  const onBought = (order) => navigate(`/orders/${order.id}`)
  await Promise.all([
    loadSales()
      .then(async (listed) => {
        const ids = listed.map((s) => s.id)
        let drawn = Math.min(ids.length, SALES_AT_ONCE)
        salesGrid.replaceChildren(
          ...(ids.length ? [] : [h('p', { class: 'muted' }, 'No flash sale right now.')]),
          ...ids.slice(0, drawn).map((id) => saleCard(id, onBought)),
        )
        // The next cards join the same stream: watch() reopens it once with the longer id list.
        const showMore = async () => {
          const next = ids.slice(drawn, drawn + SALES_AT_ONCE)
          drawn += next.length
          salesGrid.append(...next.map((id) => saleCard(id, onBought)))
          moreSales.hidden = drawn >= ids.length
          watch(ids.slice(0, drawn))
          await Promise.all([loadHoldings(next), loadPlaces(next)]).catch(() => {})
        }
        moreSales.hidden = drawn >= ids.length
        moreSales.addEventListener('click', () => showMore())
        watch(ids.slice(0, drawn))
        await Promise.all([loadHoldings(ids.slice(0, drawn)), loadPlaces(ids.slice(0, drawn))]).catch(
          () => {},
        )
      })
      .catch((err) => {
        salesGrid.replaceChildren(h('p', { class: 'muted' }, 'Flash sales are unavailable right now.'))
        fail(err)
      }),
    catalogue.loadPage().catch(fail),
  ])
}

// ---- /search ---------------------------------------------------------------------------------
export async function searchPage({ params, categories }) {
  const q = (params.get('q') ?? '').trim()
  const slug = params.get('category') ?? ''
  const category = categories.find((c) => c.slug === slug)
  const query = new URLSearchParams()
  if (q) query.set('q', q)
  if (slug) query.set('category', slug)
  const described = [q && `“${q}”`, category && `in ${category.name}`, slug && !category && `in ${slug}`]
    .filter(Boolean)
    .join(' ')
  const grid = productGrid(query, { empty: 'No products match.' })
  $('main').replaceChildren(
    titled('Search results'),
    h('p', { class: 'muted' }, described ? `Products ${described}` : 'Every product'),
    h('h2', { class: 'sr-only' }, 'Products'),
    grid.el,
  )
  $('search-input').value = q
  await grid.loadPage().catch(fail)
}

// ---- /products/:id ---------------------------------------------------------------------------
export async function productPage({ id }) {
  const p = await orNotFound(() => product(id), 'Product not found')
  if (!p) return
  const add = namedButton('Add', p.name, ' to cart', () => addToCart(p, add), { disabled: p.available <= 0 })
  const saleSlot = h('div', { class: 'product-sale' })
  $('main').replaceChildren(
    h(
      'article',
      { class: 'product-page' },
      thumb(p.name, p.imageUrl),
      h(
        'div',
        { class: 'product-info' },
        titled(p.name),
        h('p', { class: 'description' }, p.description || 'No description yet.'),
        h('p', { class: 'price' }, dollars(p.priceCents)),
        h(
          'p',
          { class: 'availability' },
          p.available > 0 ? `In stock: ${p.available} available` : 'Out of stock',
        ),
        add,
        saleSlot,
      ),
    ),
  )
  const sales = await loadSales().catch(() => [])
  const sale = sales.find((s) => s.productId === p.id)
  if (sale)
    saleSlot.append(
      h(
        'p',
        {},
        `${LABEL[statusOf(sale)]} flash sale: ${dollars(sale.priceCents)}. `,
        link(`/sales/${sale.id}`, `See the ${p.name} flash sale`),
      ),
    )
}

// ---- /sales/:id ------------------------------------------------------------------------------
export async function salePage({ id, navigate }) {
  const sale = await orNotFound(() => loadSale(id), 'Sale not found')
  if (!sale) return
  const { els } = saleParts(sale.id, (order) => navigate(`/orders/${order.id}`))
  $('main').replaceChildren(
    h(
      'article',
      { class: 'product-page sale-page' },
      thumb(sale.productName, sale.productImageUrl),
      h(
        'div',
        { class: 'product-info' },
        titled(`${sale.productName} flash sale`),
        h('p', {}, els.badge, ' ', els.clock),
        h(
          'p',
          { class: 'price' },
          dollars(sale.priceCents),
          sale.regularPriceCents ? [' ', h('s', { class: 'muted' }, dollars(sale.regularPriceCents))] : [],
        ),
        h('div', { class: 'bar', 'aria-hidden': 'true' }, els.bar),
        h('p', { class: 'row wrap' }, els.left, els.soldOut),
        h('p', {}, els.allowance, ` (limit ${sale.perUserLimit} per customer)`),
        sale.registeredOnly ? h('p', { class: 'muted' }, 'Registered customers only: sign in to buy.') : null,
        sale.queue ? els.queue : null,
        els.join,
        els.buy,
        h('p', {}, link(`/products/${sale.productId}`, `About ${sale.productName}`)),
      ),
    ),
  )
  watch([sale.id])
  await Promise.all([loadHoldings([sale.id]), loadPlaces([sale.id])]).catch(() => {})
}

// ---- /signin and /register -------------------------------------------------------------------
function credentialsForm({ title, submit, action, after, extra }) {
  const alert = h('p', { class: 'form-error', role: 'alert' })
  const email = h('input', {
    id: 'email',
    name: 'email',
    type: 'email',
    autocomplete: 'email',
    required: true,
  })
  const password = h('input', {
    id: 'password',
    name: 'password',
    type: 'password',
    autocomplete: title === 'Sign in' ? 'current-password' : 'new-password',
    minlength: 8,
    required: true,
  })
  const button = h('button', { type: 'submit' }, submit)
  const form = h(
    'form',
    { class: 'card form', novalidate: true },
    h('label', { for: 'email' }, 'Email'),
    email,
    h('label', { for: 'password' }, 'Password'),
    password,
    alert,
    button,
  )
  form.addEventListener('submit', (event) => {
    event.preventDefault()
    alert.textContent = ''
    if (!email.value || !email.checkValidity()) return void (alert.textContent = 'Enter your email address.')
    if (password.value.length < 8) return void (alert.textContent = 'The password has at least 8 characters.')
    busy(button, async () => {
      try {
        await action(email.value.trim(), password.value)
        after()
      } catch (err) {
        alert.textContent =
          err.code === 'INVALID_CREDENTIALS'
            ? 'Wrong email or password.'
            : err.code === 'EMAIL_TAKEN'
              ? 'An account with this email exists already: sign in instead.'
              : err.message
      }
    })
  })
  $('main').replaceChildren(h('div', { class: 'narrow' }, titled(title), form, extra))
  email.focus()
}

export function signInPage({ back }) {
  credentialsForm({
    title: 'Sign in',
    submit: 'Sign in',
    action: signIn,
    after: () => {
      toast(`Welcome back, ${currentUser()?.email}`, 'success')
      back()
    },
    extra: h(
      'p',
      {},
      'New here? ',
      link('/register', 'Create an account'),
      h('br'),
      h(
        'small',
        { class: 'muted' },
        'Demo customers: alice@, bob@ or carol@stampede.local, password stampede-demo.',
      ),
    ),
  })
}

export function registerPage({ back }) {
  credentialsForm({
    title: 'Create an account',
    submit: 'Create account',
    action: register,
    after: () => {
      toast('Welcome! Your account is ready.', 'success')
      back()
    },
    extra: h('p', {}, 'Have an account? ', link('/signin', 'Sign in')),
  })
}

// ---- /orders and /orders/:id -----------------------------------------------------------------
const itemCount = (order) => order.items.reduce((n, i) => n + i.quantity, 0)

export async function ordersPage() {
  const list = h('ul', { class: 'lines orders' }, h('li', { class: 'muted' }, 'Loading…'))
  $('main').replaceChildren(titled('Your orders'), list)
  const { data } = await api('/api/orders?limit=50')
  list.replaceChildren(
    ...(data.items.length ? [] : [h('li', { class: 'muted' }, 'No orders yet.')]),
    ...data.items.map((o) =>
      h(
        'li',
        { class: 'line' },
        h('span', { class: 'grow' }, link(`/orders/${o.id}`, `Order #${o.number}`)),
        h('span', { class: `badge ${o.status}` }, STATUS_WORD[o.status]),
        h('span', { class: 'muted' }, plural(itemCount(o), 'item')),
        h('strong', {}, dollars(o.totalCents)),
      ),
    ),
  )
}

let orderClock = null
export async function orderPage({ id }) {
  clearInterval(orderClock)
  let order = await orNotFound(
    async () => (await api(`/api/orders/${encodeURIComponent(id)}`)).data,
    'Order not found',
    [400, 403, 404],
  )
  if (!order) return
  const badge = h('span', { class: `badge ${order.status}` }, STATUS_WORD[order.status])
  const timeLeft = h('p', { class: 'clock' })
  const items = h('ul', { class: 'lines' })
  const actions = h('p', { class: 'row wrap start' })
  const paintClock = () => {
    const left = Date.parse(order.expiresAt) - Date.now()
    timeLeft.textContent =
      order.status !== 'reserved'
        ? ''
        : left > 0
          ? `Time left to pay: ${duration(left)}`
          : 'Time to pay is up'
  }
  const act = (label, action, attrs) => {
    const button = h('button', { type: 'button', ...attrs }, label)
    button.addEventListener('click', () =>
      busy(button, async () => {
        try {
          const path = `/api/orders/${order.id}/${action}`
          const { data } = await (action === 'pay' ? postOnce(path) : api(path, { method: 'POST' }))
          toast(
            action === 'pay' ? 'Paid (simulated): thank you!' : 'Order cancelled; its units are back on sale',
            'success',
          )
          order = data
        } catch (err) {
          fail(err)
          order = (await api(`/api/orders/${order.id}`).catch(() => ({ data: order }))).data
        }
        paint()
      }),
    )
    return button
  }
  const paint = () => {
    badge.textContent = STATUS_WORD[order.status]
    badge.className = `badge ${order.status}`
    actions.replaceChildren(
      ...(order.status === 'reserved'
        ? [act('Pay (simulated)', 'pay'), act('Cancel order', 'cancel', { class: 'secondary' })]
        : []),
    )
    paintClock()
  }
  items.append(
    ...order.items.map((i) => {
      const name = h('span', { class: 'grow' }, `Product ${i.productId}`)
      product(i.productId)
        .then((p) => name.replaceChildren(link(`/products/${p.id}`, p.name)))
        .catch(() => {})
      return h(
        'li',
        { class: 'line' },
        name,
        h('span', {}, `${i.quantity} × ${dollars(i.unitPriceCents)}`),
        h('strong', {}, dollars(i.quantity * i.unitPriceCents)),
      )
    }),
  )
  $('main').replaceChildren(
    h(
      'div',
      { class: 'narrow' },
      titled(`Order #${order.number}`),
      h('p', {}, 'Status: ', badge),
      order.saleId ? h('p', {}, link(`/sales/${order.saleId}`, 'Back to the flash sale')) : null,
      items,
      h('p', { class: 'total' }, 'Total ', h('strong', {}, dollars(order.totalCents))),
      timeLeft,
      h('p', { class: 'muted small' }, 'Payment is simulated: no card is charged.'),
      actions,
      h('p', {}, link('/orders', 'All your orders'), ' · ', h('a', { href: '/' }, 'Continue shopping')),
    ),
  )
  paint()
  orderClock = setInterval(() => (timeLeft.isConnected ? paintClock() : clearInterval(orderClock)), 1000)
}

/** What `load` resolves to; when the API says there is no such thing, the "not found" page and undefined. */
async function orNotFound(load, title, statuses = [400, 404]) {
  try {
    return await load()
  } catch (err) {
    if (!(err instanceof ApiError && statuses.includes(err.status))) throw err
    notFound(title)
    return undefined
  }
}

export function notFound(title = 'Page not found') {
  $('main').replaceChildren(titled(title), h('p', {}, h('a', { href: '/' }, 'Back to the shop')))
}
