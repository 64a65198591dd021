import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { Redis } from 'ioredis'
import { waitFor, type Log } from '../process.js'
import { redisPing } from '../redis.js'
import { daemonPid, startDaemon, stopDaemon, type Daemon } from './netns.js'
import { HA_PORTS, haHost, hostsWithRole, SENTINEL_MASTER_NAME, type HaHost } from './topology.js'

// Redis with Sentinel: a redis-server and a Sentinel on each of redis1..redis3. redis1 starts as the
// primary, the others replicate it. The three Sentinels watch the primary; when two of them (the quorum)
// find it gone for SENTINEL_DOWN_AFTER_MS, they elect one of themselves to promote a replica and point
// the other replica, and every client that asks them, at it. The app connects through the Sentinels.

export interface RedisHaSetup {
  runDir: string
  dir: string
}

export const SENTINEL_DOWN_AFTER_MS = 2000
/** A primary that has heard from no replica for this long refuses writes (min-replicas-max-lag). */
export const MIN_REPLICAS_MAX_LAG_S = 5

const nodeDir = (r: RedisHaSetup, host: HaHost) => path.join(r.dir, host.name)
const redisConf = (r: RedisHaSetup, host: HaHost) => path.join(nodeDir(r, host), 'redis.conf')
const sentinelConf = (r: RedisHaSetup, host: HaHost) => path.join(nodeDir(r, host), 'sentinel.conf')
const firstPrimary = () => haHost('redis1')

export function redisDaemon(r: RedisHaSetup, host: HaHost): Daemon {
  return {
    host,
    service: 'redis',
    expect: `redis-server ${host.address}:${HA_PORTS.redis}`,
    command: 'redis-server',
    args: [redisConf(r, host)],
    runDir: r.runDir,
  }
}

export function sentinelDaemon(r: RedisHaSetup, host: HaHost): Daemon {
  return {
    host,
    service: 'sentinel',
    expect: `redis-server ${host.address}:${HA_PORTS.sentinel} [sentinel]`,
    command: 'redis-server',
    args: [sentinelConf(r, host), '--sentinel'],
    runDir: r.runDir,
  }
}

/**
 * Written once, when the node is made: Sentinel rewrites both files as it reconfigures the nodes (who
 * replicates whom, the current epoch), and a restarted node must come back with what it last knew.
 */
function writeConfigs(r: RedisHaSetup, host: HaHost): void {
  const dir = nodeDir(r, host)
  mkdirSync(dir, { recursive: true })
  const primary = firstPrimary()
  writeOnce(redisConf(r, host), [
    `bind ${host.address}`,
    `port ${HA_PORTS.redis}`,
    'protected-mode no',
    'daemonize no',
    `dir ${dir}`,
    'appendonly yes',
    'appendfsync everysec',
    'save ""',
    'maxclients 10000',
    // Concurrency: a primary that has lost every replica for MIN_REPLICAS_MAX_LAG_S refuses writes
    // (NOREPLICAS). Cut off from the Sentinels and the app (split brain), the old primary would
    // otherwise go on admitting buyers that any client still reaching it sends, on a gate the
    // promoted replica never sees: units sold twice over, or writes lost when it rejoins.
    'min-replicas-to-write 1',
    `min-replicas-max-lag ${MIN_REPLICAS_MAX_LAG_S}`,
    ...(host.name === primary.name ? [] : [`replicaof ${primary.address} ${HA_PORTS.redis}`]),
  ])
  writeOnce(sentinelConf(r, host), [
    `bind ${host.address}`,
    `port ${HA_PORTS.sentinel}`,
    'daemonize no',
    `dir ${dir}`,
    `sentinel monitor ${SENTINEL_MASTER_NAME} ${primary.address} ${HA_PORTS.redis} 2`,
    `sentinel down-after-milliseconds ${SENTINEL_MASTER_NAME} ${SENTINEL_DOWN_AFTER_MS}`,
    `sentinel failover-timeout ${SENTINEL_MASTER_NAME} 10000`,
    `sentinel parallel-syncs ${SENTINEL_MASTER_NAME} 1`,
  ])
}

/** Writes a config file of these lines, unless it exists: from then on it is Sentinel's to rewrite. */
function writeOnce(file: string, lines: string[]): void {
  if (existsSync(file)) return
  const header =
    '# Written by scripts/stack/ha/redis-ha.ts when the node was made; Sentinel rewrites it since.'
  writeFileSync(file, [header, ...lines, ''].join('\n'))
}

/** Every redis-server, then every Sentinel; waits until the replicas are in sync and the Sentinels agree. */
export async function ensureRedisHa(r: RedisHaSetup, log: Log): Promise<void> {
  const nodes = hostsWithRole('redis')
  for (const host of nodes) {
    writeConfigs(r, host)
    await startDaemon(redisDaemon(r, host), log)
  }
  for (const host of nodes) {
    await waitFor(`redis on ${host.name}`, () => redisPing(HA_PORTS.redis, host.address), 15_000)
  }
  for (const host of nodes) await startDaemon(sentinelDaemon(r, host), log)
  await waitFor(
    'sentinel: every Sentinel knows the primary, its 2 replicas and the 2 other Sentinels',
    async () => {
      const views = await Promise.all(nodes.map((h) => sentinelView(h)))
      return views.every((v) => v !== undefined && v.replicas === 2 && v.sentinels === 2)
    },
    60_000,
  )
  log(`redis: ${(await redisPrimary())?.name} is the primary, 2 replicas, 3 sentinels`)
}

/** What one Sentinel knows of the master it monitors. */
async function sentinelView(host: HaHost): Promise<{ replicas: number; sentinels: number } | undefined> {
  return withClient(host, HA_PORTS.sentinel, async (client) => {
    const fields = (await client.call('SENTINEL', 'MASTER', SENTINEL_MASTER_NAME)) as string[]
    const get = (name: string) => Number(fields[fields.indexOf(name) + 1])
    return { replicas: get('num-slaves'), sentinels: get('num-other-sentinels') }
  })
}

/** The host the Sentinels name as primary (the first that answers), or undefined. */
export async function redisPrimary(): Promise<HaHost | undefined> {
  for (const host of hostsWithRole('redis')) {
    const address = await withClient(host, HA_PORTS.sentinel, async (client) => {
      const answer = (await client.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', SENTINEL_MASTER_NAME)) as
        string[] | null
      return answer?.[0]
    })
    if (address) return hostsWithRole('redis').find((h) => h.address === address)
  }
  return undefined
}

/** What a redis-server says it is (ROLE): master or slave, or undefined when it does not answer. */
export async function redisRole(host: HaHost): Promise<string | undefined> {
  return withClient(host, HA_PORTS.redis, async (client) => ((await client.call('ROLE')) as string[])[0])
}

/** One short-lived connection to a server on a host, or undefined when it does not answer. */
export async function withClient<T>(
  host: HaHost,
  port: number,
  use: (client: Redis) => Promise<T>,
): Promise<T | undefined> {
  const client = new Redis({
    host: host.address,
    port,
    lazyConnect: true,
    connectTimeout: 1000,
    commandTimeout: 1000,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    enableOfflineQueue: false,
  })
  client.on('error', () => undefined)
  try {
    await client.connect()
    return await use(client)
  } catch {
    return undefined
  } finally {
    client.disconnect()
  }
}

export async function stopRedisHa(r: RedisHaSetup, log: Log): Promise<void> {
  const nodes = hostsWithRole('redis')
  await Promise.all(nodes.map((h) => stopDaemon(sentinelDaemon(r, h), log)))
  await Promise.all(nodes.map((h) => stopDaemon(redisDaemon(r, h), log)))
}

export const redisHaPid = (r: RedisHaSetup, host: HaHost) => daemonPid(redisDaemon(r, host))
export const sentinelPid = (r: RedisHaSetup, host: HaHost) => daemonPid(sentinelDaemon(r, host))
