import { describe, expect, it } from 'vitest'
import { WeakPasswordError } from '../errors.js'
import { assertAcceptablePassword } from './password-policy.js'

const EMAIL = 'ada.lovelace@example.com'
const refused = (password: string) => {
  try {
    assertAcceptablePassword(password, EMAIL)
    return false
  } catch (error) {
    if (!(error instanceof WeakPasswordError)) throw error
    return true
  }
}

describe('password policy (NIST SP 800-63B)', () => {
  it('when a password is common, short once spaces are collapsed, repetitive, sequential, or the email, then it is refused', () => {
    const weak = [
      'password',
      'Password1',
      'PASSWORD123!',
      'qwertyuiop',
      '        ',
      '   a    b   ',
      'aaaaaaaa',
      '12345678',
      'abcdefghij',
      '98765432',
      EMAIL,
      'ADA.LOVELACE@EXAMPLE.COM',
      'ada.lovelace',
      'ada.lovelace2024!',
      'stampede99',
      'my ada.lovelace@example.com pw',
      'ｐａｓｓｗｏｒｄ', // full-width letters: NFKC makes them "password"
    ]
    expect(weak.filter((password) => !refused(password))).toEqual([])
  })

  it('when a password is long enough and not guessable, then it is accepted whatever its characters (no composition rules)', () => {
    const fine = [
      'correct horse battery',
      'all lowercase words',
      'tr0ub4dor&3',
      'ünïcödé pässwörd',
      '🦄🦄🦄🦄 and more',
      'lovelace-analytical-engine',
    ]
    expect(fine.filter(refused)).toEqual([])
  })
})
