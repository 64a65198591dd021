import { createHash, randomUUID } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildTestApp, newAdmin, newCustomer, newSale, type TestUser } from '../../../test/support/app.js'
import { testStack } from '../../../test/support/stack-env.js'
import { solvedProof } from '../../../test/support/proofs.js'
import { openStream } from '../../../test/support/streams.js'
import { waitFor } from '../../../scripts/stack/process.js'
import type { JoinChallenge } from './join-proof.js'
import { createAdmissions, createWaitingRoom, type Place, type QueuedSale } from './waiting-room.js'

// The waiting room on the test stack's Redis and Postgres. The scripts are driven directly on sales that
// exist only in Redis (the stack's jobs process, which admits places of real sales, never sees them); the
// API is driven on real sales, with the stack's jobs process admitting.

describe('the waiting room scripts (queue-join, queue-admit, queue-place) on Redis', () => {
  let app: FastifyInstance
  const admissions = createAdmissions('a waiting-room test secret of 32 characters')
  const room = (leaseMs = 60_000, admitFactor = 1.5) =>
    createWaitingRoom(app.redis, { admissions, admitFactor, leaseMs, keptAfterEndMs: 60_000 })
  // Sale ids no Postgres row has: nothing but this test admits their places.
  const phantom = (queue: 'fifo' | 'raffle', startsInMs: number): QueuedSale => ({
    id: 900_000_000 + Math.floor(Math.random() * 90_000_000),
    queue,
    queueSeed: queue === 'raffle' ? randomUUID().replaceAll('-', '') : null,
    startsAt: new Date(Date.now() + startsInMs),
    endsAt: new Date(Date.now() + 3_600_000),
  })
  const users = (n: number) => Array.from({ length: n }, () => randomUUID())

  beforeAll(async () => {
    app = await buildTestApp()
  })
  afterAll(async () => {
    await app?.close()
  })

  it('when buyers join a fifo room, then places follow arrival, a second join finds the same place, and nothing is admitted before the start', async () => {
    const waiting = room()
    const sale = phantom('fifo', 60_000)
    const buyers = users(5)
    for (const [i, user] of buyers.entries()) {
      expect(await waiting.join(sale, user)).toMatchObject({ status: 'waiting', place: i + 1, drawn: false })
    }
    expect(await waiting.join(sale, buyers[2]!)).toMatchObject({ status: 'waiting', place: 3, places: 5 })
    expect(await waiting.admit(sale, 10)).toMatchObject({ state: 'upcoming', admitted: 0 })
    expect(await waiting.placeOf(sale.id, randomUUID())).toEqual({ status: 'absent' })
  })

  it('when the sale starts, then places are admitted in order, never more undecided than k x the units left, and a purchase frees its slot', async () => {
    const waiting = room()
    const sale = phantom('fifo', -1000)
    const buyers = users(6)
    for (const user of buyers) await waiting.join(sale, user)
    // k = 1.5, 2 units left: 3 admitted.
    expect(await waiting.admit(sale, 2)).toMatchObject({
      state: 'open',
      admitted: 3,
      admittedNow: 3,
      undecided: 0,
    })
    expect(await waiting.admit(sale, 2)).toMatchObject({ admitted: 3, admittedNow: 0, undecided: 3 })
    const first = (await waiting.placeOf(sale.id, buyers[0]!)) as Extract<Place, { status: 'admitted' }>
    expect(first).toMatchObject({ status: 'admitted', place: 1, bought: false })
    expect(admissions.verify(first.admission, sale.id, buyers[0]!)).toBe(Date.parse(first.leaseEndsAt))
    expect(await waiting.placeOf(sale.id, buyers[4]!)).toMatchObject({
      status: 'waiting',
      place: 5,
      admitted: 3,
    })
    // The first buys (its lease claimed): one unit left, floor(1.5) = 1 slot, 2 undecided: nobody new.
    await waiting.claimLease(sale.id, buyers[0]!, Date.parse(first.leaseEndsAt))
    expect(await waiting.admit(sale, 1)).toMatchObject({ admitted: 3, admittedNow: 0, undecided: 2 })
    // Units came back: 4 left, 6 slots, 2 undecided: the rest of the queue (3 places) is admitted.
    expect(await waiting.admit(sale, 4)).toMatchObject({ admitted: 6, admittedNow: 3 })
  })

  it('when an admitted buyer lets its lease pass, then its place lapses and the next place is admitted', async () => {
    const waiting = room(300, 1)
    const sale = phantom('fifo', -1000)
    const buyers = users(3)
    for (const user of buyers) await waiting.join(sale, user)
    expect(await waiting.admit(sale, 1)).toMatchObject({ admitted: 1 })
    const admitted = (await waiting.placeOf(sale.id, buyers[0]!)) as Extract<Place, { status: 'admitted' }>
    await sleep(400)
    expect(await waiting.admit(sale, 1)).toMatchObject({ admitted: 2, admittedNow: 1, lapsed: 1 })
    expect(await waiting.placeOf(sale.id, buyers[0]!)).toEqual({ status: 'lapsed' })
    expect(await waiting.placeOf(sale.id, buyers[1]!)).toMatchObject({ status: 'admitted', place: 2 })
    // The lapsed admission no longer buys: Redis' clock is past its lease.
    await expect(
      waiting.claimLease(sale.id, buyers[0]!, Date.parse(admitted.leaseEndsAt)),
    ).rejects.toMatchObject({
      code: 'NOT_ADMITTED',
    })
  })

  it('when no unit is left, then the room closes: waiting places hear sold out and nobody joins; when units come back, it opens again', async () => {
    const waiting = room()
    const sale = phantom('fifo', -1000)
    const buyers = users(3)
    for (const user of buyers.slice(0, 2)) await waiting.join(sale, user)
    expect(await waiting.admit(sale, 0)).toMatchObject({ state: 'closed', admitted: 0 })
    expect(await waiting.placeOf(sale.id, buyers[0]!)).toEqual({ status: 'sold_out' })
    await expect(waiting.join(sale, buyers[2]!)).rejects.toMatchObject({ code: 'SOLD_OUT' })
    expect(await waiting.admit(sale, 1)).toMatchObject({ state: 'open', admitted: 1 })
  })

  it('when buyers join a raffle before the start, then admission follows the seeded draw, not arrival; a place taken after the draw queues behind', async () => {
    const waiting = room(60_000, 10)
    const sale = { ...phantom('raffle', 1500), startsAt: new Date(Date.now() + 1500) }
    const buyers = users(30)
    for (const user of buyers) await waiting.join(sale, user)
    const draw = (user: string) =>
      parseInt(createHash('sha1').update(`${sale.queueSeed}:${user}`).digest('hex').slice(0, 13), 16)
    const expected = [...buyers].sort((a, b) => draw(a) - draw(b) || (a < b ? -1 : 1))
    expect(expected).not.toEqual(buyers)
    await sleep(Math.max(0, sale.startsAt.getTime() - Date.now()) + 100)
    expect(await waiting.admit(sale, 1)).toMatchObject({ admitted: 10 })
    const late = randomUUID()
    expect(await waiting.join(sale, late)).toMatchObject({ place: 31, drawn: true })
    for (const [rank, user] of expected.entries()) {
      const place = await waiting.placeOf(sale.id, user)
      expect(place).toMatchObject(
        rank < 10 ? { status: 'admitted', place: rank + 1 } : { status: 'waiting', place: rank + 1 },
      )
    }
  })

  it('when an admission is used by another buyer, on another sale, altered or missing, then it is refused', () => {
    const token = admissions.sign(7, 'buyer-a', 1_900_000_000_000)
    expect(admissions.verify(token, 7, 'buyer-a')).toBe(1_900_000_000_000)
    for (const [given, saleId, user] of [
      [token, 7, 'buyer-b'],
      [token, 8, 'buyer-a'],
      [token.replace(/^1/, '2'), 7, 'buyer-a'],
      [undefined, 7, 'buyer-a'],
      ['nonsense', 7, 'buyer-a'],
    ] as const)
      expect(() => admissions.verify(given, saleId, user)).toThrow(
        expect.objectContaining({ code: 'NOT_ADMITTED' }),
      )
  })
})

describe('a sale with a waiting room, through the API (the stack jobs process admits)', () => {
  let app: FastifyInstance
  let admin: TestUser

  beforeAll(async () => {
    app = await buildTestApp()
    admin = await newAdmin(app)
  })
  afterAll(async () => {
    await app?.close()
  })

  const join = (buyer: TestUser, saleId: number) =>
    app.inject({ method: 'POST', url: `/api/sales/${saleId}/queue`, headers: buyer.headers })
  const placeOf = async (buyer: TestUser, saleId: number) =>
    (await app.inject({ url: `/api/sales/${saleId}/queue`, headers: buyer.headers })).json<Place>()
  const buy = (buyer: TestUser, saleId: number, admission?: string) =>
    app.inject({
      method: 'POST',
      url: `/api/sales/${saleId}/purchase`,
      headers: {
        ...buyer.headers,
        'idempotency-key': randomUUID(),
        ...(admission ? { 'waiting-room-admission': admission } : {}),
      },
      payload: { quantity: 1 },
    })
  async function turnOf(buyer: TestUser, saleId: number): Promise<Extract<Place, { status: 'admitted' }>> {
    let place = await placeOf(buyer, saleId)
    await waitFor(
      `the buyer's turn (last: ${JSON.stringify(place)})`,
      async () => (place = await placeOf(buyer, saleId)).status === 'admitted',
      15_000,
    )
    return place as Extract<Place, { status: 'admitted' }>
  }

  it('when buyers queue for a fifo sale, then they buy in join order with their own admission, and the rest hear sold out', async () => {
    const saleId = await newSale(app, admin, { units: 2, startsInMs: 1500, queue: 'fifo' })
    const sale = (await app.inject({ url: `/api/sales/${saleId}` })).json<{ queue: string }>()
    expect(sale.queue).toBe('fifo')
    const buyers = [] as TestUser[]
    for (let i = 0; i < 5; i++) buyers.push(await newCustomer(app))
    for (const [i, buyer] of buyers.entries()) {
      const joined = await join(buyer, saleId)
      expect(joined.statusCode).toBe(200)
      expect(joined.json()).toMatchObject({ status: 'waiting', place: i + 1 })
    }
    // Two tabs of one buyer: one place.
    expect((await join(buyers[0]!, saleId)).json()).toMatchObject({ place: 1, places: 5 })

    const first = await turnOf(buyers[0]!, saleId)
    // k = 1.5 and 2 units: the first three are admitted, the fourth waits.
    expect((await placeOf(buyers[3]!, saleId)).status).toBe('waiting')
    expect((await buy(buyers[3]!, saleId)).json()).toMatchObject({ code: 'NOT_ADMITTED' })
    expect((await buy(buyers[3]!, saleId, first.admission)).json()).toMatchObject({ code: 'NOT_ADMITTED' })

    expect((await buy(buyers[0]!, saleId, first.admission)).statusCode).toBe(201)
    const second = await turnOf(buyers[1]!, saleId)
    expect((await buy(buyers[1]!, saleId, second.admission)).statusCode).toBe(201)
    const third = await turnOf(buyers[2]!, saleId)
    expect((await buy(buyers[2]!, saleId, third.admission)).json()).toMatchObject({ code: 'SOLD_OUT' })
    await waitFor(
      'sold out',
      async () => (await placeOf(buyers[4]!, saleId)).status === 'sold_out',
      10_000,
    ).catch(() => undefined)
    expect(await placeOf(buyers[4]!, saleId)).toEqual({ status: 'sold_out' })
    expect((await join(await newCustomer(app), saleId)).json()).toMatchObject({ code: 'SOLD_OUT' })
  })

  it('when a waiting room asks for a proof of work, then a place needs a solved challenge of its own, and a buyer with a place keeps it without another', async () => {
    const saleId = await newSale(app, admin, {
      units: 2,
      startsInMs: 60_000,
      queue: 'fifo',
      queueDifficulty: 300,
    })
    const buyer = await newCustomer(app)
    expect((await join(buyer, saleId)).json()).toMatchObject({ code: 'PROOF_REQUIRED' })
    const challenge = (
      await app.inject({ url: `/api/sales/${saleId}/queue/challenge`, headers: buyer.headers })
    ).json<JoinChallenge>()
    expect(challenge.maxnumber).toBe(300)
    const proof = await solvedProof(challenge)
    // Another buyer cannot use it.
    const other = await newCustomer(app)
    const withProof = (who: TestUser) =>
      app.inject({
        method: 'POST',
        url: `/api/sales/${saleId}/queue`,
        headers: who.headers,
        payload: { proof },
      })
    expect((await withProof(other)).json()).toMatchObject({ code: 'PROOF_REQUIRED' })
    expect((await withProof(buyer)).json()).toMatchObject({ status: 'waiting', place: 1 })
    expect((await join(buyer, saleId)).json()).toMatchObject({ status: 'waiting', place: 1 })
  })

  it('when a queued sale sells through Postgres (atomic), then the lease is checked by Redis and an admitted buyer buys', async () => {
    const atomic = await buildTestApp({ STOCK_STRATEGY: 'atomic' })
    try {
      const saleId = await newSale(atomic, admin, { units: 1, queue: 'fifo' })
      const buyer = await newCustomer(atomic)
      await atomic.inject({ method: 'POST', url: `/api/sales/${saleId}/queue`, headers: buyer.headers })
      const turn = await turnOf(buyer, saleId)
      const bought = await atomic.inject({
        method: 'POST',
        url: `/api/sales/${saleId}/purchase`,
        headers: {
          ...buyer.headers,
          'idempotency-key': randomUUID(),
          'waiting-room-admission': turn.admission,
        },
        payload: { quantity: 1 },
      })
      expect(bought.statusCode).toBe(201)
      expect(await placeOf(buyer, saleId)).toMatchObject({ status: 'admitted', bought: true })
    } finally {
      await atomic.close()
    }
  })

  it('when a sale has no waiting room, then joining is refused and buying needs no admission', async () => {
    const saleId = await newSale(app, admin, { units: 3 })
    const buyer = await newCustomer(app)
    expect((await join(buyer, saleId)).json()).toMatchObject({ code: 'NO_WAITING_ROOM' })
    expect((await buy(buyer, saleId)).statusCode).toBe(201)
  })

  it('when the last unit of a queued sale is bought, then a buyer still waiting hears `closed` on the stream', async () => {
    const url = testStack().nginxUrl
    if (!url) return
    const saleId = await newSale(app, admin, { units: 1, queue: 'fifo' })
    const [buyer, waiter] = [await newCustomer(app), await newCustomer(app)]
    await join(buyer, saleId)
    await join(waiter, saleId)
    const stream = await openStream(`${url}/api/sales/${saleId}/events`)
    try {
      const place = await turnOf(buyer, saleId)
      expect(place.status).toBe('admitted')
      const bought = await fetch(`${url}/api/sales/${saleId}/purchase`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          ...buyer.headers,
          'idempotency-key': randomUUID(),
          'waiting-room-admission': place.admission,
        },
        body: JSON.stringify({ quantity: 1 }),
      })
      expect(bought.status).toBe(201)
      await waitFor('closed on the stream', () => stream.received().includes('"state":"closed"'), 5000).catch(
        () => undefined,
      )
    } finally {
      stream.close()
    }
    const events = stream
      .received()
      .split('\n\n')
      .filter((e) => e.includes('event: queue'))
    expect(events.length).toBeGreaterThan(0)
    expect(events.some((e) => e.includes('"state":"closed"'))).toBe(true)
    expect(await placeOf(waiter, saleId)).toEqual({ status: 'sold_out' })
  })
})
