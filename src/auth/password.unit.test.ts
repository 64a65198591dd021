import { describe, expect, it } from 'vitest'
import { hashPassword, verifyPassword } from './password.js'

describe('password hashing', () => {
  it('when a password is hashed, then the same password verifies against the stored value', async () => {
    const stored = await hashPassword('correct horse battery staple')
    expect(stored).toMatch(/^scrypt\$16384\$8\$1\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/)
    expect(await verifyPassword('correct horse battery staple', stored)).toBe(true)
  })

  it('when the same password is hashed twice, then the salts differ', async () => {
    expect(await hashPassword('same')).not.toBe(await hashPassword('same'))
  })

  it('when a wrong password is given, then verification is false', async () => {
    const stored = await hashPassword('right password')
    expect(await verifyPassword('wrong password', stored)).toBe(false)
    expect(await verifyPassword('', stored)).toBe(false)
  })

  it('when the stored value is malformed or missing, then verification is false and does not throw', async () => {
    const good = await hashPassword('pw')
    const [scheme, n, r, p, salt, hash] = good.split('$')
    const malformed = [
      '',
      'plaintext',
      'bcrypt$2b$10$abc',
      `${scheme}$${n}$${r}$${p}$${salt}`,
      `${scheme}$${n}$${r}$${p}$${salt}$${hash}$extra`,
      `${scheme}$abc$${r}$${p}$${salt}$${hash}`,
      `${scheme}$1000$${r}$${p}$${salt}$${hash}`, // N not a power of two
      `${scheme}$${2 ** 30}$${r}$${p}$${salt}$${hash}`, // would need 128 GiB
      `${scheme}$${n}$${r}$${p}$$${hash}`,
      `${scheme}$${n}$${r}$${p}$${salt}$`,
      `${scheme}$${n}$${r}$${p}$${salt}$AAAA`,
    ]
    for (const stored of malformed) {
      await expect(verifyPassword('pw', stored), stored).resolves.toBe(false)
    }
    expect(await verifyPassword('pw', null)).toBe(false)
  })
})
