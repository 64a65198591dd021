import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { REPO_ROOT } from '../../scripts/stack/paths.js'
import { appFingerprint, type AppSetup } from '../../scripts/stack/pm2.js'

// `stack:up` restarts running workers only when this fingerprint changes.
const setup = (env: Record<string, string> = {}): AppSetup => ({
  pm2Home: '/nonexistent/pm2',
  logsDir: '/nonexistent/logs',
  ecosystem: path.join(REPO_ROOT, 'ecosystem.config.cjs'),
  env: { PORT: '23000', ...env },
  instances: 2,
  apiPort: 23000,
})

describe('the workers fingerprint', () => {
  it('when a setting is given in the shell, then the running workers count as outdated', () => {
    expect(appFingerprint(setup(), { STOCK_STRATEGY: 'atomic' })).not.toBe(
      appFingerprint(setup(), { STOCK_STRATEGY: 'optimistic' }),
    )
  })

  it('when only variables that are no setting change, then the workers stay', () => {
    expect(appFingerprint(setup(), { TERM: 'xterm' })).toBe(appFingerprint(setup(), { TERM: 'dumb' }))
  })

  it("when the stack sets a setting itself, then the shell's value of it does not matter", () => {
    const stackOwn = setup({ STOCK_STRATEGY: 'redis-gate' })
    expect(appFingerprint(stackOwn, { STOCK_STRATEGY: 'atomic' })).toBe(
      appFingerprint(stackOwn, { STOCK_STRATEGY: 'optimistic' }),
    )
  })
})
