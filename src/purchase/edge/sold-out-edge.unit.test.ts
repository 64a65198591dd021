import { describe, expect, it } from 'vitest'
import type { RunningSale } from '../../sales/sales.repository.js'
import { createSoldOutEdge } from './sold-out-edge.js'

// The jobs process's side of the sold-out edge, on data given in place of Postgres and the gate.

const ENDS = new Date('2026-12-07T12:00:00Z')
const sale = (id: number, available = 0): RunningSale => ({
  id,
  startsAt: new Date(0),
  endsAt: ENDS,
  available,
  registeredOnly: false,
  queue: null,
})

function edgeOf(options: {
  sales: RunningSale[]
  gate?: Map<number, { available: number; inFlight: number } | null>
  orders?: Map<number, number>
  buyers?: Map<number, string[]>
}) {
  const reads = { buyers: 0 }
  let clock = 0
  const edge = createSoldOutEdge({
    primary: {} as never,
    runningSales: async () => options.sales,
    gateSnapshot: options.gate ? async (id) => options.gate!.get(id) ?? null : null,
    countOrders: async (_db, ids) => new Map(ids.map((id) => [id, options.orders?.get(id) ?? 0])),
    listRetries: async (_db, id) => {
      reads.buyers++
      return options.buyers?.get(id) ?? []
    },
    minIntervalMs: 100,
    now: () => clock,
  })
  return { edge, reads, tick: (ms: number) => (clock += ms) }
}

describe('the sold-out state nginx reads', () => {
  it('when the gate has no unit left and none in flight, the sale is sold out; with a unit in flight or Redis away, it is not', async () => {
    const { edge } = edgeOf({
      sales: [sale(1), sale(2), sale(3, 5), sale(4), sale(5, 2)],
      gate: new Map([
        [1, { available: 0, inFlight: 0 }],
        [2, { available: 0, inFlight: 1 }],
        [3, { available: 5, inFlight: 0 }],
        [4, null],
        // The row still has units (a batch not committed yet): not sold out, whatever the gate says.
        [5, { available: 0, inFlight: 0 }],
      ]),
    })
    const { state } = await edge.read()
    expect(state.sales.map((s) => s.id)).toEqual([1])
  })

  it('when sales sell through Postgres, the stock row decides', async () => {
    const { edge } = edgeOf({ sales: [sale(1, 0), sale(2, 3)] })
    expect((await edge.read()).state.sales.map((s) => s.id)).toEqual([1])
  })

  it('when a sold-out sale gets no new order, its retries are read once; when it gets one, again, and the version changes', async () => {
    const orders = new Map([[1, 2]])
    const buyers = new Map([[1, ['a', 'b']]])
    const { edge, reads, tick } = edgeOf({ sales: [sale(1)], orders, buyers })
    const first = await edge.read()
    expect(first.state.sales[0]).toMatchObject({
      id: 1,
      orders: 2,
      retries: ['a', 'b'],
      endsAtMs: ENDS.getTime(),
    })
    tick(100)
    const same = await edge.read()
    expect(reads.buyers).toBe(1)
    expect(same.state.version).toBe(first.state.version)
    orders.set(1, 3)
    buyers.set(1, ['a', 'b', 'c'])
    tick(100)
    const next = await edge.read()
    expect(reads.buyers).toBe(2)
    expect(next.state.sales[0]!.retries).toEqual(['a', 'b', 'c'])
    expect(next.state.version).not.toBe(first.state.version)
  })

  it('when nginx asks again within the interval, it gets the state already built (no second read)', async () => {
    let rounds = 0
    const edge = createSoldOutEdge({
      primary: {} as never,
      runningSales: async () => {
        rounds++
        return []
      },
      gateSnapshot: null,
      countOrders: async () => new Map(),
      listRetries: async () => [],
      minIntervalMs: 60_000,
    })
    await Promise.all([edge.read(), edge.read()])
    await edge.read()
    expect(rounds).toBe(1)
  })
})
