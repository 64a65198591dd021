import { describe, expect, it } from 'vitest'
import { ConfigError, jwtSecretOf, loadConfig, TEST_JWT_SECRET } from './config.js'

function problemsOf(env: NodeJS.ProcessEnv): string[] {
  try {
    loadConfig(env)
  } catch (err) {
    if (err instanceof ConfigError) return err.problems
    throw err
  }
  throw new Error('expected a ConfigError')
}

describe('config', () => {
  it('when nothing is set, then every setting has a default that points at the local stack', () => {
    const config = loadConfig({})
    expect(config.PORT).toBe(23000)
    expect(config.DATABASE_URL).toContain('127.0.0.1:25432')
    expect(config.DATABASE_REPLICA_URL).toContain('127.0.0.1:25433')
    expect(config.REDIS_URL).toBe('redis://127.0.0.1:26379')
    expect(config.STOCK_STRATEGY).toBe('optimistic')
    expect(config.API_INSTANCES).toBeGreaterThanOrEqual(2)
  })

  it('when values are given as text, then numbers are parsed and empty values fall back to defaults', () => {
    const config = loadConfig({ PORT: '4000', DB_POOL_MAX: '7', LOG_LEVEL: '' })
    expect(config.PORT).toBe(4000)
    expect(config.DB_POOL_MAX).toBe(7)
    expect(config.LOG_LEVEL).toBe('info')
  })

  it('when a value is bad, then start-up stops with a message that names the variable and the value', () => {
    const problems = problemsOf({ PORT: 'eighty', STOCK_STRATEGY: 'yolo', REDIS_URL: 'http://x' })
    expect(problems).toHaveLength(3)
    expect(problems.find((p) => p.startsWith('PORT="eighty"'))).toBeDefined()
    expect(problems.find((p) => p.startsWith('STOCK_STRATEGY="yolo"'))).toBeDefined()
    expect(problems.find((p) => p.startsWith('REDIS_URL="http://x"'))).toMatch(/redis:\/\//)
  })

  it('when REDIS_SENTINELS lists host:port pairs, then they are parsed; empty means no sentinels; a bad entry is refused', () => {
    expect(loadConfig({}).REDIS_SENTINELS).toEqual([])
    expect(loadConfig({}).REDIS_SENTINEL_NAME).toBe('stampede')
    expect(
      loadConfig({ REDIS_SENTINELS: '10.0.0.1:26379, redis-b:26380,[::1]:26381' }).REDIS_SENTINELS,
    ).toEqual([
      { host: '10.0.0.1', port: 26379 },
      { host: 'redis-b', port: 26380 },
      { host: '::1', port: 26381 },
    ])
    expect(problemsOf({ REDIS_SENTINELS: '10.0.0.1' })[0]).toMatch(/^REDIS_SENTINELS=.*host:port/)
    expect(problemsOf({ REDIS_SENTINELS: '10.0.0.1:99999' })[0]).toMatch(/^REDIS_SENTINELS=/)
  })

  it('when a port is out of range or a pool size is zero, then it is refused', () => {
    expect(problemsOf({ PORT: '70000' })[0]).toMatch(/^PORT=/)
    expect(problemsOf({ DB_POOL_MAX: '0' })[0]).toMatch(/^DB_POOL_MAX=/)
  })

  it('when a process that signs tokens runs outside NODE_ENV=test with the built-in JWT secret, then it is refused', () => {
    for (const NODE_ENV of [undefined, 'development', 'production']) {
      const config = loadConfig({ NODE_ENV })
      expect(config.JWT_SECRET).toBe(TEST_JWT_SECRET)
      expect(() => jwtSecretOf(config), String(NODE_ENV)).toThrow(/JWT_SECRET/)
      expect(() => jwtSecretOf(config)).toThrow(ConfigError)
    }
    expect(jwtSecretOf(loadConfig({ NODE_ENV: 'test' }))).toBe(TEST_JWT_SECRET)
    const own = 'x'.repeat(40)
    expect(jwtSecretOf(loadConfig({ NODE_ENV: 'production', JWT_SECRET: own }))).toBe(own)
    expect(problemsOf({ JWT_SECRET: 'too short' })[0]).toMatch(/^JWT_SECRET=/)
  })

  it('when guests would be deleted while their tokens are still valid, then start-up stops', () => {
    expect(problemsOf({ GUEST_TTL_HOURS: '24' })[0]).toMatch(/^GUEST_TTL_HOURS=/)
    expect(() => loadConfig({ GUEST_TTL_HOURS: '2', JWT_TTL_SECONDS: '3600' })).not.toThrow()
  })

  it('when a switch is given as text, then 1/true/on and 0/false/off are read, anything else refused', () => {
    expect(loadConfig({}).DEBUG_WORKER_HEADER).toBe(false)
    expect(loadConfig({ DEBUG_WORKER_HEADER: '1' }).DEBUG_WORKER_HEADER).toBe(true)
    expect(loadConfig({ DEBUG_WORKER_HEADER: 'off' }).DEBUG_WORKER_HEADER).toBe(false)
    expect(problemsOf({ DEBUG_WORKER_HEADER: 'yes please' })[0]).toMatch(/^DEBUG_WORKER_HEADER=/)
  })
})
