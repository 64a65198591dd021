import { describe, expect, it } from 'vitest'
import { isRedisUnavailable, runIdIn } from './client.js'

describe('Redis errors', () => {
  it('when ioredis gives up on a command (timeout, no connection, aborted), then it is "Redis unavailable"', () => {
    const aborted = Object.assign(new Error('Command aborted due to connection close'), {
      name: 'AbortError',
    })
    const retries = Object.assign(new Error('Reached the max retries per request limit (which is 1).'), {
      name: 'MaxRetriesPerRequestError',
    })
    for (const err of [
      new Error('Command timed out'),
      new Error("Stream isn't writeable and enableOfflineQueue options is false"),
      new Error('Connection is closed.'),
      aborted,
      retries,
    ])
      expect(isRedisUnavailable(err)).toBe(true)
  })

  it('when Redis refused a command or something else failed, then it is not', () => {
    const reply = Object.assign(new Error('ERR Error running script'), { name: 'ReplyError' })
    expect(isRedisUnavailable(reply)).toBe(false)
    expect(isRedisUnavailable(new Error('connection terminated unexpectedly'))).toBe(false)
    expect(isRedisUnavailable('Command timed out')).toBe(false)
  })
})

describe('the Redis server run id', () => {
  it('when INFO server answers, then the run id is its run_id line, and null without one', () => {
    const info =
      '# Server\r\nredis_version:7.0.15\r\nrun_id:0123456789abcdef0123456789abcdef01234567\r\ntcp_port:6379\r\n'
    expect(runIdIn(info)).toBe('0123456789abcdef0123456789abcdef01234567')
    expect(runIdIn('# Server\r\nredis_version:7.0.15\r\n')).toBeNull()
  })
})
