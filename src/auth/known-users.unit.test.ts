import { describe, expect, it } from 'vitest'
import { createKnownUsers } from './known-users.js'

describe('known users', () => {
  it('when 300 unseen users arrive in one turn, then one lookup answers them all and a second visit asks nobody', async () => {
    const calls: string[][] = []
    const users = createKnownUsers({
      existing: async (ids) => {
        calls.push(ids)
        return new Set(ids.filter((id) => !id.startsWith('gone')))
      },
      ttlMs: 60_000,
    })
    const ids = Array.from({ length: 300 }, (_, i) => (i === 7 ? 'gone-7' : `user-${i}`))

    const first = await Promise.all([...ids, ...ids].map((id) => users.exists(id)))
    const again = await Promise.all(ids.map((id) => users.exists(id)))

    expect(calls).toHaveLength(1)
    expect(calls[0]).toHaveLength(300)
    expect(first.filter((known) => !known)).toHaveLength(2)
    expect(again.filter((known) => !known)).toHaveLength(1)
    expect(calls).toHaveLength(1)
  })

  it('when the lookup fails, then the user is let through (the writes’ foreign keys still refuse)', async () => {
    const users = createKnownUsers({
      existing: async () => {
        throw new Error('primary down')
      },
      ttlMs: 60_000,
    })
    expect(await users.exists('anyone')).toBe(true)
  })
})
