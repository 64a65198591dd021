import { inject } from 'vitest'
import type { StackOptions } from '../../scripts/stack/stack.js'

/**
 * What the global setup (test/global-setup.ts) started, as every test sees it. The same URLs are also in
 * process.env (DATABASE_URL, DATABASE_REPLICA_URL, REDIS_URL, NGINX_URL, NGINX_ADMIN_URL), so code that
 * calls loadConfig() in a test reaches the test stack without being told.
 */
export interface TestStack {
  /** 'local': the local stack of scripts/stack; 'containers': docker-compose.yml under testcontainers. */
  runtime: 'local' | 'containers'
  databaseUrl: string
  replicaUrl: string
  redisUrl: string
  /** undefined when the test stack runs without the app (STACK_TEST_APP=0). */
  nginxUrl: string | undefined
  nginxAdminUrl: string | undefined
  workers: string[]
  /** The secret the stack's workers verify tokens with (also in process.env.JWT_SECRET). */
  jwtSecret: string
  /**
   * The local stack's options, for stopService/startService from scripts/stack/stack.ts; undefined with
   * containers. Use these, not stackProfile('test'): in a test process DATABASE_URL is set, which
   * stackProfile would read as "external server".
   */
  options: StackOptions | undefined
}

declare module 'vitest' {
  export interface ProvidedContext {
    testStack: TestStack
  }
}

export function testStack(): TestStack {
  return inject('testStack')
}

/** The local stack's options, for tests that stop and start servers; throws with containers. */
export function localStackOptions(): StackOptions {
  const { options } = testStack()
  if (!options) throw new Error('this test needs the local stack (it stops and starts servers)')
  return options
}
