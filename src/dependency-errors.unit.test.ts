import { describe, expect, it } from 'vitest'
import { isDependencyUnavailable } from './dependency-errors.js'

const withCode = (code: string, message = 'x') => Object.assign(new Error(message), { code })

describe('isDependencyUnavailable', () => {
  it('when Postgres or Redis is away, saturated or too slow, then the error is a dependency outage', () => {
    for (const err of [
      withCode('ECONNREFUSED'),
      withCode('57P01', 'terminating connection due to administrator command'),
      withCode('57014', 'canceling statement due to statement timeout'),
      withCode('53300', 'sorry, too many clients already'),
      withCode('08006'),
      new Error('timeout exceeded when trying to connect'),
      new Error('Connection terminated unexpectedly'),
      new Error('Command timed out'),
      new Error("Stream isn't writeable and enableOfflineQueue options is false"),
      new Error('wrapped', { cause: withCode('ECONNRESET') }),
      Object.assign(new Error('Command aborted due to connection close'), { name: 'AbortError' }),
      Object.assign(new Error('Reached the max retries per request limit (which is 1).'), {
        name: 'MaxRetriesPerRequestError',
      }),
    ]) {
      expect(isDependencyUnavailable(err), String(err)).toBe(true)
    }
  })

  it('when Redis answers that it is not the primary (a replica, or a primary without its replicas), then the error is a dependency outage', () => {
    const reply = (message: string) => Object.assign(new Error(message), { name: 'ReplyError' })
    for (const err of [
      reply("READONLY You can't write against a read only replica."),
      reply(
        "READONLY You can't write against a read only replica. script: 4cb91861d207e5689edc816618ab68f9d6de3b44, on @user_script:1.",
      ),
      reply('NOREPLICAS Not enough good replicas to write.'),
      reply('NOREPLICAS Not enough good replicas to write. script: 4cb9, on @user_script:1.'),
      reply('MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to no.'),
    ]) {
      expect(isDependencyUnavailable(err), String(err)).toBe(true)
    }
  })

  it('when the error is a bug or a bad request, then it is not an outage', () => {
    for (const err of [
      new TypeError("Cannot read properties of undefined (reading 'id')"),
      withCode('23505', 'duplicate key value violates unique constraint'),
      withCode('22P02', 'invalid input syntax for type uuid'),
      withCode('42P01', 'relation does not exist'),
      Object.assign(new Error('ERR Error running script'), { name: 'ReplyError' }),
      'a string',
      null,
    ]) {
      expect(isDependencyUnavailable(err), String(err)).toBe(false)
    }
  })
})
