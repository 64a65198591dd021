// The API client: JSON over fetch with the stored Bearer token, one Idempotency-Key per click, and the
// shopper's identity (a guest token until they sign in). Every number the shop shows comes from /api.
/* global crypto, localStorage, fetch, setTimeout */
import { toast } from './dom.js'

const TOKEN_KEY = 'stampede.token'
const USER_KEY = 'stampede.user' // { email, isGuest } of the signed-in customer, for the header
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const uuid = () =>
  crypto.randomUUID?.() ?? // only in secure contexts; the fallback covers plain http on a LAN address
  '10000000-1000-4000-8000-100000000000'.replace(/[018]/g, (c) =>
    (c ^ (crypto.getRandomValues(new Uint8Array(1))[0] & (15 >> (c / 4)))).toString(16),
  )

export class ApiError extends Error {
  constructor(status, body, retryAfter) {
    super(body?.message ?? (status === 0 ? 'The network failed; check your connection' : `HTTP ${status}`))
    this.status = status
    this.code = body?.code ?? (status === 0 ? 'NETWORK' : 'HTTP_' + status)
    this.retryAfter = retryAfter
  }
}

// ---- identity --------------------------------------------------------------------------------
const identityListeners = new Set()
/** Calls `fn` whenever the shopper becomes someone else (sign in, sign out, session ended). */
export const onIdentityChange = (fn) => identityListeners.add(fn)
const identityChanged = () => setTimeout(() => identityListeners.forEach((fn) => fn()))

/** The signed-in customer ({ email }), or null for a guest. */
export function currentUser() {
  try {
    const user = JSON.parse(localStorage.getItem(USER_KEY) ?? 'null')
    return user && !user.isGuest && localStorage.getItem(TOKEN_KEY) ? user : null
  } catch {
    return null
  }
}

function keepSession(session) {
  localStorage.setItem(TOKEN_KEY, session.token)
  localStorage.setItem(USER_KEY, JSON.stringify({ email: session.user.email, isGuest: session.user.isGuest }))
}
function dropSession() {
  localStorage.removeItem(TOKEN_KEY)
  localStorage.removeItem(USER_KEY)
}

/** fetch, with a network failure (the request may or may not have arrived) as ApiError status 0. */
async function send(path, init) {
  try {
    return await fetch(path, init)
  } catch {
    throw new ApiError(0)
  }
}

/** The answer's JSON; an error status throws it as an ApiError. */
async function dataOf(res) {
  const data = await res.json().catch(() => null)
  if (!res.ok) throw new ApiError(res.status, data, Number(res.headers.get('retry-after')) || 0)
  return data
}

/** A request without the stored token (sign-in, registration, a new guest). */
async function publicPost(path, body) {
  return dataOf(
    await send(path, {
      method: 'POST',
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    }),
  )
}

let guestRequest = null
/** The stored token, or a new guest's (one request however many calls ask at once). */
function token() {
  const saved = localStorage.getItem(TOKEN_KEY)
  if (saved) return saved
  guestRequest ??= publicPost('/api/auth/guest')
    .then((session) => {
      keepSession(session)
      return session.token
    })
    .finally(() => (guestRequest = null))
  return guestRequest
}
export const ensureToken = token

export async function signIn(email, password) {
  keepSession(await publicPost('/api/auth/login', { email, password }))
  identityChanged()
}
export async function register(email, password) {
  keepSession(await publicPost('/api/auth/register', { email, password }))
  identityChanged()
}
/**
 * Ends the session on the server (every token of the account stops working, on every device) and forgets
 * it here; the next call starts a fresh guest. Signing out still happens here if the server cannot be told.
 */
export async function signOut() {
  const saved = localStorage.getItem(TOKEN_KEY)
  if (saved)
    await send('/api/auth/logout', { method: 'POST', headers: { authorization: `Bearer ${saved}` } }).catch(
      () => undefined,
    )
  dropSession()
  await token()
  identityChanged()
}

// ---- calls -----------------------------------------------------------------------------------
/**
 * fetch + JSON + Bearer token. A 401 means the API no longer accepts the stored token (it expired, the
 * user is gone after a re-seed, another secret signed it): the page becomes a new guest, says so once,
 * and repeats the call once.
 */
export async function api(path, { method = 'GET', body, headers = {} } = {}, isRetry = false) {
  const sent = await token()
  const init = { method, headers: { ...headers, authorization: `Bearer ${sent}` } }
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json'
    init.body = JSON.stringify(body)
  }
  const res = await send(path, init)
  if (res.status === 401 && !isRetry) {
    // Several calls may fail with the same old token at once: only the first replaces it and speaks.
    if (localStorage.getItem(TOKEN_KEY) === sent) {
      dropSession()
      toast('Your session ended: you continue as a new guest')
      identityChanged()
    }
    return api(path, { method, body, headers }, true)
  }
  return { data: await dataOf(res), res }
}

/** A POST with one Idempotency-Key per click, reused when the answer is unknown or "try again". */
export async function postOnce(path, body, headers = {}) {
  const key = uuid()
  for (let attempt = 1; ; attempt++) {
    try {
      return await api(path, { method: 'POST', body, headers: { ...headers, 'idempotency-key': key } })
    } catch (err) {
      const unsure = err.status === 0 || err.status === 503 || err.code === 'IDEMPOTENCY_KEY_IN_USE'
      if (!unsure || attempt >= 3) throw err
      await sleep((err.retryAfter || attempt) * 1000)
    }
  }
}

// ---- products, fetched once each per page load -----------------------------------------------
const products = new Map()
export function product(id) {
  if (!products.has(id)) {
    const p = api(`/api/products/${id}`).then((r) => r.data)
    p.catch(() => products.delete(id))
    products.set(id, p)
  }
  return products.get(id)
}
export const rememberProduct = (p) => products.set(p.id, Promise.resolve(p))
