import { spawn } from 'node:child_process'
import { mkdirSync, openSync } from 'node:fs'
import path from 'node:path'
import type { TestProject } from 'vitest/node'
import { REPO_ROOT } from '../scripts/stack/paths.js'
import { stackDown, stackJwtSecret, stackProfile, stackUp } from '../scripts/stack/stack.js'
import { containerRuntimeAvailable } from '../scripts/stack/container-runtime.js'
import type { TestStack } from './support/stack-env.js'

// Runs once in vitest's main process, before any test file. It starts the servers every test uses and
// hands their URLs to the tests twice: through process.env (inherited by the forked test processes, read by
// loadConfig()) and through project.provide (read with testStack() from test/support/stack-env.ts).

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  if (await containerRuntimeAvailable()) {
    const { startComposeEnvironment } = await import('./support/compose-environment.js')
    const compose = await startComposeEnvironment()
    publish(project, {
      runtime: 'containers',
      databaseUrl: compose.databaseUrl,
      replicaUrl: compose.replicaUrl,
      redisUrl: compose.redisUrl,
      nginxUrl: compose.nginxUrl,
      nginxAdminUrl: compose.nginxAdminUrl,
      workers: [],
      options: undefined,
      jwtSecret: compose.jwtSecret,
    })
    // The global teardown removes the containers and volumes (under podman there is no reaper: an interrupted
    // run leaves them, and `docker-compose -p stampede-test-<id> down -v` removes them).
    return () => compose.stop()
  }

  // The test profile: <STACK_DIR>/test, every port + 100, app and nginx unless STACK_TEST_APP=0.
  const env = { ...process.env }
  const options = stackProfile('test', env)
  const log = (message: string) => console.log(`[test stack] ${message}`)
  let stopping: Promise<void> | undefined
  const teardown = () => (stopping ??= stackDown(options, log))
  // The servers run detached, so an interrupted run (Ctrl-C) would leave them behind. vitest exits soon
  // after the signal, too soon for an orderly stop, so the stop runs in a process of its own.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      stopping ??= Promise.resolve(stopInBackground(options.dir, env))
    })
  }
  try {
    const urls = await stackUp(options, log)
    publish(project, {
      runtime: 'local',
      databaseUrl: urls.databaseUrl,
      replicaUrl: urls.replicaUrl,
      redisUrl: urls.redisUrl,
      nginxUrl: options.services.nginx ? urls.nginxUrl : undefined,
      nginxAdminUrl: options.services.nginx ? urls.nginxAdminUrl : undefined,
      workers: options.services.app ? urls.workers : [],
      options,
      jwtSecret: stackJwtSecret(options),
    })
  } catch (error) {
    await teardown()
    throw error
  }
  return teardown
}

function publish(project: TestProject, stack: TestStack) {
  project.provide('testStack', stack)
  const env: Record<string, string | undefined> = {
    DATABASE_URL: stack.databaseUrl,
    DATABASE_REPLICA_URL: stack.replicaUrl,
    REDIS_URL: stack.redisUrl,
    NGINX_URL: stack.nginxUrl,
    NGINX_ADMIN_URL: stack.nginxAdminUrl,
    STACK_RUNTIME: stack.runtime,
    // Tokens a test signs (buildTestApp, the load-test runner) are valid for the stack's workers too.
    JWT_SECRET: stack.jwtSecret,
  }
  for (const [name, value] of Object.entries(env)) if (value !== undefined) process.env[name] = value
}

/** `npm run stack:down -- --profile test`, detached, with the environment the stack was started with. */
function stopInBackground(stackDir: string, env: NodeJS.ProcessEnv): void {
  mkdirSync(path.join(stackDir, 'logs'), { recursive: true })
  const out = openSync(path.join(stackDir, 'logs', 'interrupted-down.log'), 'a')
  const tsx = path.join(REPO_ROOT, 'node_modules', '.bin', 'tsx')
  spawn(tsx, ['scripts/stack.ts', 'down', '--profile', 'test'], {
    cwd: REPO_ROOT,
    env,
    detached: true,
    stdio: ['ignore', out, out],
  }).unref()
  console.log(`[test stack] interrupted: stopping in the background (${stackDir}/logs/interrupted-down.log)`)
}
