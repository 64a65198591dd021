import { randomBytes, randomUUID } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import type { StartedDockerComposeEnvironment, StartedTestContainer } from 'testcontainers'

// The test stack in containers: docker-compose.yml started by testcontainers. Only for machines where
// containerRuntimeAvailable() says an engine answers; import it dynamically, never statically, so the local
// stack path never loads testcontainers.

export interface ComposeEnvironment {
  databaseUrl: string
  replicaUrl: string
  redisUrl: string
  nginxUrl: string
  /** The secret the app containers verify tokens with: random per run, like a local stack folder's. */
  jwtSecret: string
  stop(): Promise<void>
}

const projectRoot = fileURLToPath(new URL('../../', import.meta.url))

/**
 * Builds the app image and starts every service of docker-compose.yml under a project name of its own
 * (own containers, network and volumes), waiting for each healthcheck. Host ports are left to the engine so
 * it never collides with the local stack or another run. stop() removes the containers and volumes.
 */
export async function startComposeEnvironment(): Promise<ComposeEnvironment> {
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
      STAMPEDE_PROMETHEUS_HOST_PORT: '',
      STAMPEDE_GRAFANA_HOST_PORT: '',
      JWT_SECRET: jwtSecret,
    })
    // The one-shot `migrate` service has exited by then and is not waited for; app waits on it anyway.
    .withDefaultWaitStrategy(Wait.forHealthCheck())
    .withStartupTimeout(300_000)
  // testcontainers calls `docker compose` (v2); STAMPEDE_COMPOSE_STANDALONE=1 uses the `docker-compose` binary.
  if (process.env.STAMPEDE_COMPOSE_STANDALONE === '1') {
    compose = compose.withClientOptions({ executable: { standalone: true } })
  }

  const started = await compose.up()
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
