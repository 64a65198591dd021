import { randomBytes, randomUUID } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import type { StartedDockerComposeEnvironment, StartedTestContainer } from 'testcontainers'
import { composeCommand, startHealthcheckPump, useContainerEngine } from '../../scripts/stack/compose.js'

// The test stack in containers: docker-compose.yml started by testcontainers. Only for machines where
// containerRuntimeAvailable() says an engine answers or STACK_RUNTIME=containers asks for one; import it
// dynamically, never statically, so the local stack path never loads testcontainers.

export interface ComposeEnvironment {
  databaseUrl: string
  replicaUrl: string
  redisUrl: string
  nginxUrl: string
  nginxAdminUrl: string
  /** The secret the app containers verify tokens with: random per run, like a local stack folder's. */
  jwtSecret: string
  stop(): Promise<void>
}

const projectRoot = fileURLToPath(new URL('../../', import.meta.url))

/**
 * Builds the app image and starts every service of docker-compose.yml under a project name of its own
 * (own containers, network and volumes), waiting for each healthcheck. Host ports are left to the engine so
 * it never collides with the local stack or another run. stop() removes the containers and volumes.
 * Every container starts here, before any test file runs, and none is created or removed until stop():
 * podman adds and removes network interfaces with containers, which a browser beside it sees as
 * ERR_NETWORK_CHANGED.
 */
export async function startComposeEnvironment(): Promise<ComposeEnvironment> {
  // DOCKER_HOST (podman's socket when that is the engine) before testcontainers reads it.
  const engine = await useContainerEngine(process.env)
  const { DockerComposeEnvironment, Wait } = await import('testcontainers')
  const projectName = `stampede-test-${randomUUID().slice(0, 8)}`
  const jwtSecret = randomBytes(48).toString('base64url')

  let compose = new DockerComposeEnvironment(projectRoot, 'docker-compose.yml')
    .withProjectName(projectName)
    .withBuild()
    // An empty value publishes the port on 127.0.0.1 with a host port chosen by the engine.
    .withEnvironment({
      STAMPEDE_POSTGRES_HOST_PORT: '',
      STAMPEDE_REPLICA_HOST_PORT: '',
      STAMPEDE_REDIS_HOST_PORT: '',
      STAMPEDE_NGINX_HOST_PORT: '',
      STAMPEDE_NGINX_ADMIN_HOST_PORT: '',
      STAMPEDE_PROMETHEUS_HOST_PORT: '',
      STAMPEDE_GRAFANA_HOST_PORT: '',
      JWT_SECRET: jwtSecret,
      // As the local test stack: the tests sign up many users from one address.
      NGINX_SIGNUP_RATE: '100000r/s',
      NGINX_SIGNUP_BURST: '100000',
      RATE_LIMIT_SIGNUP_PER_MINUTE: '1000000',
      LOG_LEVEL: process.env.LOG_LEVEL || 'warn',
    })
    // The one-shot `migrate` service has exited by then and is not waited for; app waits on it anyway.
    .withDefaultWaitStrategy(Wait.forHealthCheck())
    .withStartupTimeout(300_000)
  // testcontainers calls `docker compose` (v2); where the Docker CLI has no v2, the standalone v1.29 binary.
  const [command] = await composeCommand(process.env)
  if (command === 'docker-compose') {
    compose = compose.withClientOptions({ executable: { standalone: true } })
  }

  const pump = startHealthcheckPump(engine, projectName)
  let started: StartedDockerComposeEnvironment
  try {
    started = await compose.up()
  } finally {
    await pump.stop()
  }
  try {
    const postgres = service(started, projectName, 'postgres')
    const replica = service(started, projectName, 'replica')
    const redis = service(started, projectName, 'redis')
    const nginx = service(started, projectName, 'nginx')
    return {
      databaseUrl: `postgres://stampede:stampede@${postgres.getHost()}:${postgres.getMappedPort(5432)}/stampede`,
      replicaUrl: `postgres://stampede:stampede@${replica.getHost()}:${replica.getMappedPort(5432)}/stampede`,
      redisUrl: `redis://${redis.getHost()}:${redis.getMappedPort(6379)}`,
      nginxUrl: `http://${nginx.getHost()}:${nginx.getMappedPort(28080)}`,
      nginxAdminUrl: `http://${nginx.getHost()}:${nginx.getMappedPort(28081)}`,
      jwtSecret,
      async stop() {
        await started.down({ removeVolumes: true })
      },
    }
  } catch (error) {
    await started.down({ removeVolumes: true })
    throw error
  }
}

/** Compose v2 names a container `<service>-1`; v1 (standalone) `<project>_<service>_1`. */
function service(
  started: StartedDockerComposeEnvironment,
  projectName: string,
  name: string,
): StartedTestContainer {
  try {
    return started.getContainer(`${name}-1`)
  } catch {
    return started.getContainer(`${projectName}_${name}_1`)
  }
}
