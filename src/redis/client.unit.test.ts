import { describe, expect, it } from 'vitest'
import { runIdIn } from './client.js'

describe('the Redis server run id', () => {
  it('when INFO server answers, then the run id is its run_id line, and null without one', () => {
    const info =
      '# Server\r\nredis_version:7.0.15\r\nrun_id:0123456789abcdef0123456789abcdef01234567\r\ntcp_port:6379\r\n'
    expect(runIdIn(info)).toBe('0123456789abcdef0123456789abcdef01234567')
    expect(runIdIn('# Server\r\nredis_version:7.0.15\r\n')).toBeNull()
  })
})
