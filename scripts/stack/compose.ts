import { execFile, spawn } from 'node:child_process'
import { promisify } from 'node:util'
import { findContainerEngine, type ContainerEngine } from './container-runtime.js'
import { REPO_ROOT } from './paths.js'
import { sleep, type Log } from './process.js'

// docker-compose.yml driven from the project's scripts (`npm run demo -- --runtime compose`, the tests'
// containers path): find the engine, run Compose v2 or the standalone v1 binary, and under podman run the
// healthchecks that nothing else runs. See docs/docker.md.

const run = promisify(execFile)

/**
 * The engine the containers paths use, written into `env` (DOCKER_HOST, and under podman the two
 * testcontainers settings it needs) so that docker-compose and testcontainers reach it. Throws when none
 * answers.
 */
export async function useContainerEngine(env: NodeJS.ProcessEnv = process.env): Promise<ContainerEngine> {
  const engine = await findContainerEngine(env)
  if (!engine) {
    throw new Error(
      'no container engine answers (DOCKER_HOST, /var/run/docker.sock, /run/podman/podman.sock): ' +
        'on Debian without Docker, run `npm run containers:setup` as root first (docs/docker.md)',
    )
  }
  env.DOCKER_HOST = engine.dockerHost
  if (engine.podman) {
    // Ryuk, testcontainers' reaper, is an image from Docker Hub; the global teardown removes the containers.
    env.TESTCONTAINERS_RYUK_DISABLED ??= 'true'
    // testcontainers reads a /.dockerenv file as "inside a container" and would look for the host elsewhere.
    env.TESTCONTAINERS_HOST_OVERRIDE ??= 'localhost'
  }
  return engine
}

/** `docker compose` (v2) when the Docker CLI has it, else the standalone `docker-compose` (v1.29). */
export async function composeCommand(env: NodeJS.ProcessEnv = process.env): Promise<[string, ...string[]]> {
  try {
    await run('docker', ['compose', 'version'], { env })
    return ['docker', 'compose']
  } catch {
    return ['docker-compose']
  }
}

/**
 * Runs `podman healthcheck run` for the project's containers whose health is still `starting`, every
 * second, until stop(). podman runs healthchecks from systemd timers; without systemd nobody runs them, a
 * container stays `starting` for ever and Compose's `condition: service_healthy` waits for ever. With
 * Docker, or podman under systemd, the engine runs them itself and this does nothing. Only while
 * containers start: the exec of a healthcheck creates no network interface, but nothing needs it later.
 */
export function startHealthcheckPump(engine: ContainerEngine, project: string): { stop(): Promise<void> } {
  if (!engine.podman) return { stop: async () => undefined }
  let stopped = false
  const loop = (async () => {
    while (!stopped) {
      const ids = await podmanLines([
        'ps',
        '--filter',
        `label=com.docker.compose.project=${project}`,
        '--filter',
        'health=starting',
        '--format',
        '{{.ID}}',
      ])
      for (const id of ids) {
        if (stopped) break
        // A failing check (exit 1) is the normal answer while a service starts; podman counts it.
        await podmanLines(['healthcheck', 'run', id])
      }
      await sleep(1000)
    }
  })()
  return {
    async stop() {
      stopped = true
      await loop
    },
  }
}

async function podmanLines(args: string[]): Promise<string[]> {
  try {
    const { stdout } = await run('podman', args, { timeout: 30_000 })
    return stdout.split('\n').filter((line) => line.trim() !== '')
  } catch {
    return []
  }
}

export interface ComposeProject {
  name: string
  engine: ContainerEngine
  /** The environment docker-compose.yml is read with (ports, secrets, limits) and DOCKER_HOST. */
  env: NodeJS.ProcessEnv
}

/** How long `compose up` may take, builds included, before it is stopped as hung (a cold build takes ~2 min). */
const COMPOSE_UP_TIMEOUT_MS = 10 * 60_000

/** `compose up -d --build` for the default services (not the `monitoring` profile), waiting for health. */
export async function composeUp(project: ComposeProject, log: Log): Promise<void> {
  const pump = startHealthcheckPump(project.engine, project.name)
  try {
    await compose(project, ['up', '-d', '--build'], log, COMPOSE_UP_TIMEOUT_MS)
  } finally {
    await pump.stop()
  }
}

/** `compose down -v`: containers, the network and the data volumes. */
export async function composeDown(project: ComposeProject, log: Log): Promise<void> {
  await compose(project, ['down', '-v', '--remove-orphans'], log)
}

/** The host address a published port ended up on, as host:port (`127.0.0.1:<port>`). */
export async function composePort(project: ComposeProject, service: string, port: number): Promise<string> {
  const [command, ...prefix] = await composeCommand(project.env)
  const { stdout } = await run(command, [...prefix, '-p', project.name, 'port', service, String(port)], {
    cwd: REPO_ROOT,
    env: project.env,
  })
  const address = stdout.trim().split('\n')[0]
  if (!address) throw new Error(`${service}:${port} is not published`)
  return address.replace(/^0\.0\.0\.0:/, '127.0.0.1:')
}

/** Runs one compose command; its output goes to `log` line by line, a non-zero exit throws. */
async function compose(project: ComposeProject, args: string[], log: Log, timeoutMs = 5 * 60_000) {
  const [command, ...prefix] = await composeCommand(project.env)
  // A service that never turns healthy would keep Compose waiting for ever: the timeout ends it (SIGTERM)
  // and the non-zero exit below says what it printed last.
  const child = spawn(command, [...prefix, '-p', project.name, ...args], {
    cwd: REPO_ROOT,
    env: project.env,
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: timeoutMs,
  })
  const tail: string[] = []
  const onData = (chunk: Buffer) => {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (line.trim() === '') continue
      tail.push(line)
      if (tail.length > 40) tail.shift()
      log(line)
    }
  }
  child.stdout.on('data', onData)
  child.stderr.on('data', onData)
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject)
    child.on('close', resolve)
  })
  if (code !== 0) {
    throw new Error(`${command} ${[...prefix, ...args].join(' ')} exited with ${code}:\n${tail.join('\n')}`)
  }
}
