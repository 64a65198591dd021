import { randomUUID } from 'node:crypto'
import { setMaxListeners } from 'node:events'
import { Agent, request } from 'undici'
import { createLoadTestUsers, type LoadTestUser } from '../../src/auth/load-test-users.js'
import type { RunEvidence } from '../scenario.js'
import { percentiles, type ScenarioContext } from './common.js'

// The waiting room under a crowd (docs/waiting-room.md): `users` buyers join a sale's waiting room in the
// `joinSeconds` before it opens, arriving as a Poisson process; from the start each buyer acts when the
// sale's event stream says its place is admitted: it asks for its admission and buys (a share `abandon`
// never comes back, and its place must lapse without stalling the queue). `listeners` buyers far back in
// the queue keep the event stream open and time how long after the last unit was sold they hear it.
// With `bots`, that many extra accounts arrive with the crowd and hammer the purchase endpoint without
// an admission, and re-join, as fast as they can, until the sale sells out.

export interface WaitingRoomParams {
  users: number
  units: number
  /** The window in which the crowd arrives (s), before the sale opens. */
  joinSeconds: number
  /** 0: fifo (arrival order); 1: raffle (a seeded draw). */
  raffle: number
  bots: number
  /** Share of admitted buyers who never buy. */
  abandon: number
  listeners: number
  /** The longest the run may take (s). */
  timeout: number
}

export const WAITING_ROOM_DEFAULTS: WaitingRoomParams = {
  users: 20_000,
  units: 500,
  joinSeconds: 2,
  raffle: 0,
  bots: 0,
  abandon: 0.1,
  listeners: 200,
  timeout: 120,
}

/** What one run measured: the report's numbers (docs/waiting-room.md). */
export interface WaitingRoomReport {
  mode: 'fifo' | 'raffle'
  saleId: number
  users: number
  bots: number
  units: number
  joined: number
  joinP50Ms: number
  joinP99Ms: number
  /** Kendall's tau between arrival order and admission order (places), over the buyers let in. */
  kendallTau: number
  tauOver: number
  /** Buyers never let in who had arrived before the last buyer who was. */
  skipped: number
  /** What the admitted buyers' purchases were answered. */
  outcomes: Record<string, number>
  /** Places admitted by the end, per unit. */
  admittedPerUnit: number
  unitsSold: number
  abandoned: number
  /** Buyers still waiting (not admitted) when the last unit was sold. */
  waitingAtSellOut: number
  /** Listeners that heard "closed", and how long after the last unit's 201 (ms). */
  heard: number
  heardP50Ms: number | null
  heardP99Ms: number | null
  /** The longest time without an admission while places waited and units were left (ms). */
  longestStallMs: number
  stalled: boolean
  botUnits: number
  botShareOfUnits: number
  botShareOfCrowd: number
  /** Purchase attempts without an admission (bots'), and how many were refused 403 NOT_ADMITTED. */
  botAttempts: number
  botRefused: number
  sellOutSeconds: number | null
  evidence: RunEvidence
}

/**
 * Kendall's tau-b between two rankings of the same items (no ties here): (concordant - discordant) over
 * all pairs, counted in O(n log n) as the inversions of `second` ordered by `first` (a merge sort).
 */
export function kendallTau(first: number[], second: number[]): number {
  const n = first.length
  if (n < 2) return 1
  const order = [...first.keys()].sort((a, b) => first[a]! - first[b]!)
  let values = order.map((i) => second[i]!)
  let inversions = 0
  for (let width = 1; width < n; width *= 2) {
    const merged: number[] = []
    for (let start = 0; start < n; start += 2 * width) {
      const mid = Math.min(start + width, n)
      const end = Math.min(start + 2 * width, n)
      let i = start
      let j = mid
      while (i < mid && j < end) {
        if (values[i]! <= values[j]!) merged.push(values[i++]!)
        else {
          inversions += mid - i
          merged.push(values[j++]!)
        }
      }
      while (i < mid) merged.push(values[i++]!)
      while (j < end) merged.push(values[j++]!)
    }
    values = merged
  }
  const pairs = (n * (n - 1)) / 2
  return (pairs - 2 * inversions) / pairs
}

interface Buyer {
  user: LoadTestUser
  bot: boolean
  arrivalMs: number
  arrival: number
  place?: number
  abandons: boolean
  listener: boolean
}

interface QueueEvent {
  saleId: number
  state: 'upcoming' | 'open' | 'closed'
  admitted?: number
  places?: number
}

export async function waitingRoom(
  ctx: ScenarioContext,
  params: WaitingRoomParams,
): Promise<WaitingRoomReport> {
  const { target, admin, log } = ctx
  const mode = params.raffle ? 'raffle' : 'fifo'
  const dispatcher = new Agent({ connections: 1024, keepAliveTimeout: 30_000 })
  const base = target.nginxUrl
  const call = async (
    method: 'GET' | 'POST',
    path: string,
    user: LoadTestUser,
    extra: Record<string, string> = {},
  ) => {
    // A purchase carries its body; a join carries none (its only field is a proof of work, not asked here).
    const purchase = path.endsWith('/purchase')
    const response = await request(`${base}${path}`, {
      method,
      dispatcher,
      headers: {
        authorization: `Bearer ${user.token}`,
        ...(purchase ? { 'content-type': 'application/json' } : {}),
        ...extra,
      },
      ...(purchase ? { body: '{"quantity":1}' } : {}),
    })
    const text = await response.body.text()
    return { status: response.statusCode, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} }
  }

  const users = await createLoadTestUsers(target.db, target.config, params.users + params.bots)
  const productId = await admin.loadTestProduct(target.db)
  const startsInSeconds = params.joinSeconds + 1
  const sale = await admin.createSale({
    productId,
    units: params.units,
    perUserLimit: 1,
    priceCents: 999,
    openSeconds: Math.max(600, params.timeout + 60),
    startsInSeconds,
    queue: mode,
  })
  const opensAt = Date.now() + startsInSeconds * 1000
  log(
    `sale ${sale.id}: ${params.units} units, ${mode} waiting room; ${params.users} buyers and ${params.bots} bots join within ${params.joinSeconds} s`,
  )

  // A Poisson crowd: exponential gaps with the mean that fits `users` arrivals in the window; bots arrive
  // with it, at random moments of the same window.
  const mean = (params.joinSeconds * 1000) / params.users
  let t = 0
  const buyers: Buyer[] = users.map((user, i) => {
    const bot = i >= params.users
    const arrivalMs = bot
      ? Math.random() * params.joinSeconds * 1000
      : (t += -Math.log(1 - Math.random()) * mean)
    const abandons = !bot && Math.random() < params.abandon
    return { user, bot, arrivalMs, arrival: 0, abandons, listener: false }
  })
  buyers.sort((a, b) => a.arrivalMs - b.arrivalMs).forEach((b, i) => (b.arrival = i))
  // The listeners: the last humans to arrive, who will still be waiting when the units are gone.
  const humans = buyers.filter((b) => !b.bot)
  for (const b of humans.slice(-params.listeners)) b.listener = true

  const joinLatency: number[] = []
  let joined: Buyer[] = []
  const evidence: RunEvidence = {
    saleIds: [sale.id],
    userIds: users.map((u) => u.id),
    orderIds: new Set(),
    duplicateFreshIds: 0,
    unanswered: 0,
  }
  let sold = 0
  let soldOutAt: number | null = null
  let waitingAtSellOut = 0
  let botUnits = 0
  let botAttempts = 0
  let botRefused = 0
  let admittedSoFar = 0
  let lastProgressAt = opensAt
  let longestStallMs = 0
  const heardAt: number[] = []
  const outcomes: Record<string, number> = {}
  // Buyers who have not had their turn yet, by the place they last heard. A fifo place may still move by
  // a little before the start (a join that reached nginx earlier but ran later goes before it), a raffle
  // place moves at the draw: like the storefront, a buyer asks for its place when the admissions come near
  // it, and waits again if it is not its turn yet.
  const pending = new Set<Buyer>()
  const MARGIN = 300
  const admittedAt = new Map<Buyer, number>()

  async function check(buyer: Buyer) {
    pending.delete(buyer)
    const place = await call('GET', `/api/sales/${sale.id}/queue`, buyer.user)
    const status = String(place.body.status)
    if (status === 'waiting') {
      buyer.place = Number(place.body.place)
      pending.add(buyer)
      return
    }
    if (status !== 'admitted') return
    admittedAt.set(buyer, Number(place.body.place))
    if (buyer.abandons) return
    const bought = await call('POST', `/api/sales/${sale.id}/purchase`, buyer.user, {
      'idempotency-key': randomUUID(),
      'waiting-room-admission': String(place.body.admission),
    })
    const outcome = `${bought.status} ${String(bought.body.code ?? '')}`.trim()
    outcomes[outcome] = (outcomes[outcome] ?? 0) + 1
    if (bought.status === 201) {
      sold++
      evidence.orderIds.add(String(bought.body.id))
      if (buyer.bot) botUnits++
      if (sold === params.units && soldOutAt === null) {
        soldOutAt = Date.now()
        waitingAtSellOut = joined.length - admittedSoFar
      }
    } else if (bought.status >= 500) evidence.unanswered++
  }

  // The crowd's view of the queue: one event stream for the admissions, `listeners` more (the buyers at
  // the back) that time the sold-out notice.
  const abort = new AbortController()
  setMaxListeners(0, abort.signal)
  const streams: Promise<void>[] = []
  const follow = (onEvent: (event: QueueEvent) => void) =>
    request(`${base}/api/sales/${sale.id}/events`, {
      dispatcher: new Agent({ connections: 1 }),
      signal: abort.signal,
    })
      .then(async (response) => {
        let buffer = ''
        for await (const chunk of response.body) {
          buffer += chunk.toString()
          let end: number
          while ((end = buffer.indexOf('\n\n')) >= 0) {
            const block = buffer.slice(0, end)
            buffer = buffer.slice(end + 2)
            if (!block.includes('event: queue')) continue
            const data = block.split('\n').find((line) => line.startsWith('data: '))
            if (data) onEvent(JSON.parse(data.slice(6)) as QueueEvent)
          }
        }
      })
      .catch(() => undefined)

  let opened = false
  const checkNear = () => {
    if (!opened) return
    for (const buyer of [...pending])
      if (!buyer.listener && buyer.place! <= admittedSoFar + MARGIN && buyer.place! > 0) void check(buyer)
  }
  streams.push(
    follow((event) => {
      const now = Date.now()
      if (event.state === 'open' && event.admitted !== undefined && event.admitted > admittedSoFar) {
        if (now > opensAt) longestStallMs = Math.max(longestStallMs, now - lastProgressAt)
        lastProgressAt = now
        admittedSoFar = event.admitted
        checkNear()
      } else if (
        event.state === 'open' &&
        now > opensAt &&
        joined.length > admittedSoFar &&
        soldOutAt === null
      ) {
        longestStallMs = Math.max(longestStallMs, now - lastProgressAt)
      }
    }),
  )
  for (const _ of buyers.filter((b) => b.listener)) {
    let heard = false
    streams.push(
      follow((event) => {
        if (event.state !== 'closed' || heard) return
        heard = true
        heardAt.push(Date.now())
      }),
    )
  }

  // The crowd arrives (the streams above are open already, as the pages of a real crowd would be).
  const started = Date.now()
  await Promise.all(
    buyers.map(async (buyer) => {
      const due = started + buyer.arrivalMs
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, due - Date.now())))
      const answer = await call('POST', `/api/sales/${sale.id}/queue`, buyer.user)
      joinLatency.push(Date.now() - due)
      if (answer.status === 200 && typeof answer.body.place === 'number') {
        buyer.place = answer.body.place
      }
    }),
  )
  joined = buyers.filter((b) => b.place !== undefined)
  log(
    `${joined.length} of ${buyers.length} joined (join p99 ${percentiles(joinLatency)?.p99} ms); the sale opens in ${Math.max(0, opensAt - Date.now())} ms`,
  )

  // Bots: purchase attempts without an admission, and joins again, as fast as each can, until sell-out.
  const bots = joined.filter((b) => b.bot)
  const botLoops = bots.map(async (bot) => {
    while (soldOutAt === null && Date.now() - started < params.timeout * 1000) {
      botAttempts++
      const attempt = await call('POST', `/api/sales/${sale.id}/purchase`, bot.user, {
        'idempotency-key': randomUUID(),
      })
      if (attempt.status === 403) botRefused++
      await call('POST', `/api/sales/${sale.id}/queue`, bot.user)
    }
  })

  for (const b of joined) if (!b.listener) pending.add(b)
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, opensAt - Date.now()) + 300))
  opened = true
  // A raffle's places are drawn at the start: every buyer asks once (as a page does after the draw).
  if (mode === 'raffle') await Promise.all([...pending].map((b) => check(b)))
  else checkNear()

  const deadline = started + params.timeout * 1000
  while (Date.now() < deadline && !(soldOutAt !== null && Date.now() - soldOutAt > 2000)) {
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  abort.abort()
  await Promise.allSettled([...streams, ...botLoops])
  await dispatcher.close()

  // Signed: a listener may hear "closed" a few ms before the last unit's buyer reads its 201 (the worker
  // publishes it just before answering), or from the jobs process's round as the last unit is taken.
  const heardAfter = soldOutAt === null ? [] : heardAt.map((at) => at - soldOutAt!)
  // Fairness among the buyers who were let in: arrival order against admission order (their places); and
  // how many buyers who were never let in had arrived before the last one who was.
  const admittedBuyers = [...admittedAt.keys()]
  const arrivalOf = admittedBuyers.map((b) => b.arrival)
  const join = percentiles(joinLatency)
  const heard = percentiles(heardAfter)
  const placeOf = admittedBuyers.map((b) => admittedAt.get(b)!)
  const lastAdmittedArrival = Math.max(-1, ...arrivalOf)
  const skipped = joined.filter((b) => !admittedAt.has(b) && b.arrival < lastAdmittedArrival).length
  return {
    mode,
    saleId: sale.id,
    users: params.users,
    bots: params.bots,
    units: params.units,
    joined: joined.length,
    joinP50Ms: join?.p50 ?? 0,
    joinP99Ms: join?.p99 ?? 0,
    kendallTau: kendallTau(arrivalOf, placeOf),
    tauOver: admittedBuyers.length,
    skipped,
    outcomes,
    admittedPerUnit: admittedSoFar / params.units,
    unitsSold: sold,
    abandoned: joined.filter((b) => b.abandons && admittedAt.has(b)).length,
    waitingAtSellOut,
    heard: heardAfter.length,
    heardP50Ms: heard?.p50 ?? null,
    heardP99Ms: heard?.p99 ?? null,
    longestStallMs,
    stalled: longestStallMs > target.config.WAITING_ROOM_LEASE_SECONDS * 1000 + 2000,
    botUnits,
    botShareOfUnits: sold ? botUnits / sold : 0,
    botShareOfCrowd: params.bots / (params.users + params.bots),
    botAttempts,
    botRefused,
    sellOutSeconds: soldOutAt === null ? null : (soldOutAt - opensAt) / 1000,
    evidence,
  }
}
