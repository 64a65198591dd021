import { describe, expect, it } from 'vitest'
import { createKnownUsers } from './known-users.js'
import type { UserStanding } from './users.repository.js'

const customer = (tokenVersion = 0): UserStanding => ({ role: 'customer', isGuest: true, tokenVersion })

describe('known users', () => {
  it('when 300 unseen users arrive in one turn, then one lookup answers them all and a second visit asks nobody', async () => {
    const calls: string[][] = []
    const users = createKnownUsers({
      standingsOf: async (ids) => {
        calls.push(ids)
        return new Map(ids.filter((id) => !id.startsWith('gone')).map((id) => [id, customer()]))
      },
      ttlMs: 60_000,
    })
    const ids = Array.from({ length: 300 }, (_, i) => (i === 7 ? 'gone-7' : `user-${i}`))

    const first = await Promise.all([...ids, ...ids].map((id) => users.standing(id)))
    const again = await Promise.all(ids.map((id) => users.standing(id)))

    expect(calls).toHaveLength(1)
    expect(calls[0]).toHaveLength(300)
    expect(first.filter((standing) => standing === null)).toHaveLength(2)
    expect(again.filter((standing) => standing === null)).toHaveLength(1)
    expect(again[0]).toEqual(customer())
    expect(calls).toHaveLength(1)
  })

  it('when a user is forgotten (its row changed), then the next request reads the row again and sees the change', async () => {
    let version = 0
    let lookups = 0
    const users = createKnownUsers({
      standingsOf: async (ids) => {
        lookups++
        return new Map(ids.map((id) => [id, customer(version)]))
      },
      ttlMs: 60_000,
    })
    expect(await users.standing('u')).toEqual(customer(0))
    version = 1
    expect(await users.standing('u')).toEqual(customer(0))
    users.forget('u')
    expect(await users.standing('u')).toEqual(customer(1))
    version = 2
    users.forgetAll()
    expect(await users.standing('u')).toEqual(customer(2))
    expect(lookups).toBe(3)
  })

  it('when the lookup fails, then the standing is unknown (undefined), not "no such user" (the writes’ foreign keys still refuse)', async () => {
    const users = createKnownUsers({
      standingsOf: async () => {
        throw new Error('primary down')
      },
      ttlMs: 60_000,
    })
    expect(await users.standing('anyone')).toBeUndefined()
  })
})

describe('known users, forgotten mid-lookup', () => {
  it('when a user is forgotten while its lookup is in flight, then the waiting request reads the row again (it never falls back on the token)', async () => {
    let version = 0
    let release: () => void = () => {}
    const users = createKnownUsers({
      standingsOf: async (ids) => {
        const seen = version
        if (seen === 0) await new Promise<void>((resolve) => (release = resolve))
        return new Map(ids.map((id) => [id, customer(seen)]))
      },
      ttlMs: 60_000,
    })
    const waiting = users.standing('u')
    await new Promise((resolve) => setImmediate(resolve))
    await new Promise((resolve) => setImmediate(resolve))
    version = 1
    users.forget('u')
    release()

    expect(await waiting).toEqual(customer(1))
  })
})
