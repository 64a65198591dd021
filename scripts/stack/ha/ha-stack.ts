import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import pg from 'pg'
import { loadConfig } from '../../../src/config.js'
import { migrate } from '../../../src/db/migrate.js'
import { seed } from '../../../src/demo/seed.js'
import { parsePrometheusText, sumOf } from '../../../loadtest/prometheus.js'
import { buildApp } from '../build.js'
import {
  ensureNginx,
  nginxLimitsFromEnv,
  nginxPid,
  stopNginx,
  type NginxLimits,
  type NginxSetup,
} from '../nginx.js'
import { createPostgresRoot, existingPostgresRoot, REPO_ROOT, stackPaths } from '../paths.js'
import { ensureApp, listApp, stopApp, type AppSetup } from '../pm2.js'
import { ensureAppRoles } from '../postgres.js'
import { httpStatus, httpText, isAlive, run, terminate, type Log } from '../process.js'
import { stackFolderJwtSecret } from '../secrets.js'
import { ensureSystemPackages } from '../system-packages.js'
import { ensureHaproxy, haproxyPid, stopHaproxy, type HaproxySetup } from './haproxy.js'
import { ensureNetwork, networkLeftovers, removeNetwork, runIn, startDaemon } from './netns.js'
import {
  ensurePostgresHa,
  etcdDaemon,
  etcdHealthy,
  etcdPid,
  patroniDaemon,
  patroniMembers,
  patroniPid,
  postmasterPid,
  REPLICA_MAX_LAG_BYTES,
  stopPostgresHa,
  type PostgresHaSetup,
} from './postgres-ha.js'
import {
  ensureRedisHa,
  redisDaemon,
  redisHaPid,
  redisPrimary,
  redisRole,
  sentinelPid,
  stopRedisHa,
  type RedisHaSetup,
} from './redis-ha.js'
import {
  HA_API_INSTANCES,
  HA_BRIDGE,
  HA_BRIDGE_ADDRESS,
  HA_HOSTS,
  HA_PORTS,
  HA_SUBNET,
  haHost,
  hostsWithRole,
  SENTINEL_MASTER_NAME,
  type HaHost,
} from './topology.js'

// The HA profile (`npm run stack:up -- --profile ha`): eleven hosts on one machine, each a network
// namespace (scripts/stack/ha/topology.ts). It is a lab: `down` stops every server, removes the network
// and deletes the data, and every `up` makes a new cluster. docs/scaling.md explains the topology.

export interface HaOptions {
  /** <STACK_DIR>/ha */
  dir: string
  nginxLimits: NginxLimits
  /** Settings the workers get on top of the profile's own (LOG_LEVEL, STOCK_STRATEGY, ...). */
  appEnv: Record<string, string>
}

export function haProfile(
  env: NodeJS.ProcessEnv = process.env,
  appEnv: Record<string, string> = {},
): HaOptions {
  return {
    dir: path.resolve(REPO_ROOT, loadConfig(env).STACK_DIR, 'ha'),
    nginxLimits: nginxLimitsFromEnv(env),
    appEnv,
  }
}

export interface HaUrls {
  nginxUrl: string
  nginxAdminUrl: string
  /** HAProxy's read-write port: the Patroni leader. */
  databaseUrl: string
  /** HAProxy's read-only port: the replicas. */
  replicaUrl: string
  /** host:port of every Sentinel. */
  sentinels: string[]
  /** The first primary's address, for tools that take one Redis URL (the app follows the Sentinels). */
  redisUrl: string
  /** Every API worker, on every app host. */
  workers: string[]
}

const APP_DATABASE = new URL(loadConfig({}).DATABASE_URL)

export function haUrls(): HaUrls {
  const proxy = haHost('proxy').address
  const edge = haHost('edge').address
  const database = (port: number) => {
    const url = new URL(APP_DATABASE)
    url.hostname = proxy
    url.port = String(port)
    return url.toString()
  }
  return {
    nginxUrl: `http://${edge}:${HA_PORTS.nginx}`,
    nginxAdminUrl: `http://${edge}:${HA_PORTS.nginxAdmin}`,
    databaseUrl: database(HA_PORTS.haproxyPrimary),
    replicaUrl: database(HA_PORTS.haproxyReplicas),
    sentinels: hostsWithRole('redis').map((h) => `${h.address}:${HA_PORTS.sentinel}`),
    redisUrl: `redis://${haHost('redis1').address}:${HA_PORTS.redis}`,
    workers: hostsWithRole('app').flatMap((h) =>
      Array.from({ length: HA_API_INSTANCES }, (_, n) => `http://${h.address}:${HA_PORTS.api + n}`),
    ),
  }
}

const runDir = (o: HaOptions) => path.join(o.dir, 'run')

/** The database passwords of this HA folder: made on first use, kept (mode 0600) until down deletes them. */
function haSecrets(o: HaOptions): { superuser: string; replication: string } {
  const file = path.join(o.dir, 'secrets.json')
  if (!existsSync(file)) {
    mkdirSync(o.dir, { recursive: true })
    const secret = () => randomBytes(18).toString('base64url')
    writeFileSync(file, JSON.stringify({ superuser: secret(), replication: secret() }), { mode: 0o600 })
  }
  return JSON.parse(readFileSync(file, 'utf8')) as { superuser: string; replication: string }
}

async function postgresHaSetup(o: HaOptions, create: boolean): Promise<PostgresHaSetup | undefined> {
  const paths = stackPaths(o.dir)
  const pgRoot = create ? (await createPostgresRoot(paths)).root : existingPostgresRoot(paths)
  if (!pgRoot) return undefined
  const secrets = haSecrets(o)
  return {
    runDir: runDir(o),
    etcdDir: path.join(o.dir, 'etcd'),
    pgRoot,
    superuserPassword: secrets.superuser,
    replicationPassword: secrets.replication,
  }
}

const redisHaSetup = (o: HaOptions): RedisHaSetup => ({ runDir: runDir(o), dir: path.join(o.dir, 'redis') })
const haproxySetup = (o: HaOptions): HaproxySetup => ({ runDir: runDir(o), dir: path.join(o.dir, 'haproxy') })

/** One app host: its PM2 (PM2_HOME in <ha>/<host>/pm2), workers and jobs, inside the host's namespace. */
export function haAppSetup(o: HaOptions, host: HaHost): AppSetup {
  const urls = haUrls()
  const hostDir = path.join(o.dir, host.name)
  return {
    pm2Home: path.join(hostDir, 'pm2'),
    logsDir: path.join(hostDir, 'logs'),
    ecosystem: path.join(REPO_ROOT, 'ecosystem.config.cjs'),
    instances: HA_API_INSTANCES,
    apiPort: HA_PORTS.api,
    host: host.address,
    netns: host.netns,
    env: {
      ...o.appEnv,
      HOST: host.address,
      PORT: String(HA_PORTS.api),
      METRICS_PORT: String(HA_PORTS.metrics),
      JOBS_METRICS_PORT: String(HA_PORTS.jobsMetrics),
      API_INSTANCES: String(HA_API_INSTANCES),
      DATABASE_URL: urls.databaseUrl,
      DATABASE_REPLICA_URL: urls.replicaUrl,
      REDIS_URL: urls.redisUrl,
      REDIS_SENTINELS: urls.sentinels.join(','),
      REDIS_SENTINEL_NAME: SENTINEL_MASTER_NAME,
      // The ecosystem file puts the logs in <STACK_DIR>/logs: one folder per host.
      STACK_DIR: hostDir,
      // One secret for every host, so a token from one is good on all (nginx may send a buyer to any).
      JWT_SECRET: stackFolderJwtSecret(o.dir),
    },
  }
}

export function haNginxSetup(o: HaOptions): NginxSetup {
  const edge = haHost('edge')
  return {
    stackDir: path.join(o.dir, 'edge'),
    port: HA_PORTS.nginx,
    adminPort: HA_PORTS.nginxAdmin,
    upstreams: haUrls().workers.map((url) => new URL(url).host),
    // The dashboard stream and the merged metrics come from app1's jobs process (its host's workers).
    jobsMetrics: `${haHost('app1').address}:${HA_PORTS.jobsMetrics}`,
    limits: o.nginxLimits,
    address: edge.address,
    netns: edge.netns,
    // Passive health checks: two failed attempts (refused, or no connection within proxy_connect_timeout)
    // take a host out for 5 s, then one request tries it again. A host cut off by the network makes every
    // connection attempt wait for the timeout; without this, least_conn would keep sending it requests.
    // (The single-host stack lists its workers with max_fails=0 instead: see nginx.conf.)
    upstreamParameters: 'max_fails=2 fail_timeout=5s',
    // nginx counts every answer proxy_next_upstream names as a failed attempt, http_503 included. Here a
    // 503 from the app means a shared dependency is away (Redis failing over): every host answers the
    // same, and counting it would mark all three down, so nginx would answer its own 503 until
    // fail_timeout ran out, after Redis was back (the redis-primary-kill case saw 700 of them).
    nextUpstream: 'error timeout http_502',
  }
}

const defaultLog = (): Log => {
  const started = Date.now()
  return (message) => console.log(`[stack:ha +${((Date.now() - started) / 1000).toFixed(1)}s] ${message}`)
}

/**
 * Brings the HA profile up: network, then etcd + Patroni, Redis + Sentinels and the build in parallel,
 * then HAProxy, the database's roles, migrations and seed, the three app hosts, and nginx last.
 */
export async function haUp(o: HaOptions, log: Log = defaultLog()): Promise<HaUrls> {
  const urls = haUrls()
  await ensureSystemPackages(['postgres', 'redis', 'nginx', 'patroni', 'etcd', 'haproxy', 'iptables'], log)
  await ensureNetwork(log)
  const pgSetup = (await postgresHaSetup(o, true))!
  const results = await Promise.allSettled([
    ensurePostgresHa(pgSetup, log),
    ensureRedisHa(redisHaSetup(o), log),
    buildApp(path.join(o.dir, 'build.stamp'), log),
  ])
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')
  if (failed) throw failed.reason

  await ensureHaproxy(haproxySetup(o), log)
  await prepareDatabase(o, pgSetup, urls, log)
  await Promise.all(hostsWithRole('app').map((host) => ensureApp(haAppSetup(o, host), log)))
  await ensureNginx(haNginxSetup(o), log)
  log(`up: ${urls.nginxUrl}`)
  return urls
}

/** The app's role and database on the leader (through HAProxy), then migrations and the demo seed. */
async function prepareDatabase(o: HaOptions, s: PostgresHaSetup, urls: HaUrls, log: Log): Promise<void> {
  // As the superuser, on the leader through HAProxy's read-write port.
  const superuser = (database: string) => {
    const url = new URL(urls.databaseUrl)
    url.username = 'postgres'
    url.password = s.superuserPassword
    url.pathname = `/${database}`
    return new pg.Client({ connectionString: url.toString() })
  }
  await ensureAppRoles(superuser, {
    user: decodeURIComponent(APP_DATABASE.username),
    password: decodeURIComponent(APP_DATABASE.password),
    database: APP_DATABASE.pathname.slice(1),
  })
  const pool = new pg.Pool({ connectionString: urls.databaseUrl, max: 2 })
  pool.on('error', () => undefined)
  try {
    const { applied } = await migrate(pool)
    log(`database: ${applied.length} migration(s) applied`)
    await seed(pool, loadConfig({ ...process.env, ...haAppSetup(o, haHost('app1')).env }))
  } finally {
    await pool.end()
  }
}

/**
 * Stops every server, then anything still running in one of the profile's namespaces, removes the
 * namespaces, the bridge and the rules, and deletes the data. Nothing of the profile is left.
 */
export async function haDown(o: HaOptions, log: Log = defaultLog()): Promise<void> {
  const pgSetup = await postgresHaSetup(o, false)
  await stopNginx(haNginxSetup(o), log)
  await Promise.all(hostsWithRole('app').map((host) => stopApp(haAppSetup(o, host), log)))
  await stopHaproxy(haproxySetup(o), log)
  if (pgSetup) await stopPostgresHa(pgSetup, log)
  await stopRedisHa(redisHaSetup(o), log)
  // Whatever else runs in our namespaces is ours too (a server restarted by a fault case, a pg_rewind).
  for (const host of HA_HOSTS) {
    const pids = await namespacePids(host)
    if (pids.length > 0) log(`${host.name}: stopping ${pids.length} leftover process(es)`)
    await Promise.all(pids.map((pid) => terminate(pid, 5_000)))
  }
  await removeNetwork(log)
  const left = await networkLeftovers()
  if (left.length > 0) throw new Error(`stack:ha down left ${left.join(', ')} behind`)
  const pgRoot = existingPostgresRoot(stackPaths(o.dir))
  if (pgRoot) rmSync(pgRoot, { recursive: true, force: true })
  rmSync(o.dir, { recursive: true, force: true })
  log(`removed ${o.dir}`)
}

/** The PIDs of every process in a host's namespace (none when the namespace does not exist). */
async function namespacePids(host: HaHost): Promise<number[]> {
  const { code, stdout } = await run('ip', ['netns', 'pids', host.netns], { check: false })
  if (code !== 0) return []
  return stdout
    .split('\n')
    .map((line) => Number(line.trim()))
    .filter((pid) => Number.isInteger(pid) && pid > 0 && isAlive(pid))
}

export interface HaServer {
  /** etcd, patroni, postgres, haproxy, redis, sentinel, api, jobs, nginx. */
  name: string
  host: string
  address: string
  port: number
  /** leader / sync_standby / replica (Postgres), primary / replica (Redis), jobs leader / standby, ... */
  role: string
  pid: number | null
  up: boolean
}

export interface HaStatus {
  profile: 'ha'
  network: {
    bridge: string
    bridgeAddress: string
    subnet: string
    hosts: { name: string; netns: string; address: string }[]
  }
  /** `streaming`: the replicas within REPLICA_MAX_LAG_BYTES of the leader (HAProxy reads from those). */
  postgres: { leader: string | null; syncStandby: string | null; replicas: string[]; streaming: string[] }
  redis: { primary: string | null; replicas: string[] }
  urls: HaUrls
  servers: HaServer[]
  /** Namespaces, links or rules of the profile that exist (all of them when up, none after down). */
  networkObjects: string[]
}

/** Every server of the profile, where it runs, its role and PID; starts nothing. */
export async function haStatus(o: HaOptions): Promise<HaStatus> {
  const pgSetup = await postgresHaSetup(o, false)
  const [members, primary, objects] = await Promise.all([
    patroniMembers(),
    redisPrimary(),
    networkLeftovers(),
  ])
  const servers: HaServer[] = []
  const add = (
    name: string,
    host: HaHost,
    port: number,
    role: string,
    pid: number | undefined,
    up: boolean,
  ) => servers.push({ name, host: host.name, address: host.address, port, role, pid: pid ?? null, up })

  for (const host of hostsWithRole('postgres')) {
    const etcd = pgSetup ? etcdPid(pgSetup, host) : undefined
    add('etcd', host, HA_PORTS.etcdClient, 'member', etcd, await etcdHealthy(host))
    const member = members.find((m) => m.name === host.name)
    const role = member?.role === 'leader' ? 'leader' : (member?.role ?? 'unknown')
    const patroni = pgSetup ? patroniPid(pgSetup, host) : undefined
    add('patroni', host, HA_PORTS.patroniRest, role, patroni, patroni !== undefined)
    const postmaster = pgSetup ? postmasterPid(pgSetup, host) : undefined
    add(
      'postgres',
      host,
      HA_PORTS.postgres,
      role,
      postmaster,
      member?.state === 'running' || member?.state === 'streaming',
    )
  }
  const proxy = haHost('proxy')
  const haproxy = haproxyPid(haproxySetup(o))
  add('haproxy', proxy, HA_PORTS.haproxyPrimary, 'proxy', haproxy, haproxy !== undefined)
  for (const host of hostsWithRole('redis')) {
    const role = await redisRole(host)
    const redisRoleName = role === undefined ? 'down' : host.name === primary?.name ? 'primary' : 'replica'
    add('redis', host, HA_PORTS.redis, redisRoleName, redisHaPid(redisHaSetup(o), host), role !== undefined)
    const sentinel = sentinelPid(redisHaSetup(o), host)
    add('sentinel', host, HA_PORTS.sentinel, 'sentinel', sentinel, sentinel !== undefined)
  }
  for (const host of hostsWithRole('app')) {
    const app = haAppSetup(o, host)
    const processes = existsSync(app.pm2Home) ? await listApp(app).catch(() => []) : []
    for (const p of processes) {
      if (p.name === 'api') {
        const port = HA_PORTS.api + (p.pm2_env.NODE_APP_INSTANCE ?? 0)
        const up = (await httpStatus(`http://${host.address}:${port}/health/live`)) === 200
        add('api', host, port, 'worker', p.pid || undefined, up)
      } else {
        // The jobs process that holds the lease (src/db/leader-lease.ts) says so in its metrics.
        const metrics = await httpText(`http://${host.address}:${HA_PORTS.jobsMetrics}/metrics`)
        const leads = metrics !== undefined && sumOf(parsePrometheusText(metrics), 'jobs_leader') === 1
        const role = metrics === undefined ? 'jobs' : leads ? 'jobs leader' : 'jobs standby'
        add('jobs', host, HA_PORTS.jobsMetrics, role, p.pid || undefined, metrics !== undefined)
      }
    }
  }
  const edge = haHost('edge')
  const urls = haUrls()
  add(
    'nginx',
    edge,
    HA_PORTS.nginx,
    'load balancer',
    nginxPid(haNginxSetup(o)),
    (await httpStatus(`${urls.nginxUrl}/health/live`)) > 0,
  )

  const leader = members.find((m) => m.role === 'leader')
  return {
    profile: 'ha',
    network: {
      bridge: HA_BRIDGE,
      bridgeAddress: HA_BRIDGE_ADDRESS,
      subnet: `${HA_SUBNET}.0/24`,
      hosts: HA_HOSTS.map((h) => ({ name: h.name, netns: h.netns, address: h.address })),
    },
    postgres: {
      leader: leader?.name ?? null,
      syncStandby: members.find((m) => m.role === 'sync_standby')?.name ?? null,
      replicas: members.filter((m) => m.role !== 'leader').map((m) => m.name),
      streaming: members
        .filter((m) => m.role !== 'leader' && typeof m.lag === 'number' && m.lag < REPLICA_MAX_LAG_BYTES)
        .map((m) => m.name),
    },
    redis: {
      primary: primary?.name ?? null,
      replicas: hostsWithRole('redis')
        .filter((h) => h.name !== primary?.name)
        .map((h) => h.name),
    },
    urls,
    servers,
    networkObjects: objects,
  }
}

/** Levers on the profile's servers for the HA fault cases (loadtest/faults/ha-cases.ts). */
export async function haHandles(o: HaOptions) {
  const pgSetup = await postgresHaSetup(o, false)
  if (!pgSetup) throw new Error('the HA profile is not up (npm run stack:up -- --profile ha)')
  return {
    etcdPid: (host: HaHost) => etcdPid(pgSetup, host),
    patroniPid: (host: HaHost) => patroniPid(pgSetup, host),
    postmasterPid: (host: HaHost) => postmasterPid(pgSetup, host),
    redisPid: (host: HaHost) => redisHaPid(redisHaSetup(o), host),
    startEtcd: (host: HaHost, log: Log) => startDaemon(etcdDaemon(pgSetup, host), log),
    startPatroni: (host: HaHost, log: Log) => startDaemon(patroniDaemon(pgSetup, host), log),
    startRedis: (host: HaHost, log: Log) => startDaemon(redisDaemon(redisHaSetup(o), host), log),
    runIn,
  }
}

export type HaHandles = Awaited<ReturnType<typeof haHandles>>
