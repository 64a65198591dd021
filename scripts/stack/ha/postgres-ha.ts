import { chownSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { userIds } from '../paths.js'
import { httpStatus, isAlive, waitFor, type Log } from '../process.js'
import { postgresBinDir } from '../system-packages.js'
import { daemonPid, startDaemon, stopDaemon, type Daemon } from './netns.js'
import {
  HA_PORTS,
  HA_SUBNET,
  HA_PREFIX_LENGTH,
  hostsWithRole,
  PATRONI_SCOPE,
  type HaHost,
} from './topology.js'

// Postgres under Patroni, with etcd as its consensus store: an etcd member, a Patroni and the Postgres
// it runs on each of pg1..pg3. Patroni holds a leader key in etcd with a TTL; the node holding it runs
// the primary, the others stream from it. When the leader's key expires (its Patroni died, or it lost
// etcd), the healthiest replica takes the key and promotes itself. See docs/scaling.md.

export interface PostgresHaSetup {
  /** <stack>/run: pid files and logs of every daemon. */
  runDir: string
  /** etcd's data (root's). */
  etcdDir: string
  /** The Postgres nodes' area, reachable by the postgres user (not under /root). */
  pgRoot: string
  superuserPassword: string
  replicationPassword: string
}

// Patroni's timings: the leader key lives TTL seconds and is renewed every LOOP_WAIT; a leader that
// cannot reach etcd for RETRY_TIMEOUT demotes itself. Patroni requires loop_wait + 2 * retry_timeout <= ttl.
// Its defaults (30, 10, 10) mean up to 30 s without a primary; these give about 10.
export const PATRONI_TIMINGS = { ttl: 10, loopWait: 2, retryTimeout: 4 }

const etcdCluster = () =>
  hostsWithRole('postgres')
    .map((h) => `${h.name}=http://${h.address}:${HA_PORTS.etcdPeer}`)
    .join(',')

export function etcdDaemon(s: PostgresHaSetup, host: HaHost): Daemon {
  const at = (port: number) => `http://${host.address}:${port}`
  return {
    host,
    service: 'etcd',
    expect: `--data-dir ${path.join(s.etcdDir, host.name)}`,
    command: 'etcd',
    args: [
      ...['--name', host.name, '--data-dir', path.join(s.etcdDir, host.name)],
      ...[
        '--listen-client-urls',
        at(HA_PORTS.etcdClient),
        '--advertise-client-urls',
        at(HA_PORTS.etcdClient),
      ],
      ...[
        '--listen-peer-urls',
        at(HA_PORTS.etcdPeer),
        '--initial-advertise-peer-urls',
        at(HA_PORTS.etcdPeer),
      ],
      ...['--initial-cluster', etcdCluster(), '--initial-cluster-state', 'new'],
      '--initial-cluster-token=stampede-ha',
      // A member that misses heartbeats for a second calls an election: fine on one machine's bridge.
      '--heartbeat-interval=100',
      '--election-timeout=1000',
      '--log-level=warn',
    ],
    runDir: s.runDir,
  }
}

const nodeDir = (s: PostgresHaSetup, host: HaHost) => path.join(s.pgRoot, host.name)
const patroniConfig = (s: PostgresHaSetup, host: HaHost) => path.join(nodeDir(s, host), 'patroni.yml')

export function patroniDaemon(s: PostgresHaSetup, host: HaHost): Daemon {
  return {
    host,
    service: 'patroni',
    expect: patroniConfig(s, host),
    command: 'patroni',
    args: [patroniConfig(s, host)],
    user: 'postgres',
    runDir: s.runDir,
  }
}

/** Patroni's YAML for one node (JSON is valid YAML, so no YAML writer is needed). */
async function writePatroniConfig(s: PostgresHaSetup, host: HaHost): Promise<void> {
  const dir = nodeDir(s, host)
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  const binDir = await postgresBinDir()
  if (!binDir) throw new Error('postgresql-15 is not installed')
  const subnet = `${HA_SUBNET}.0/${HA_PREFIX_LENGTH}`
  const config = {
    scope: PATRONI_SCOPE,
    namespace: '/stampede/',
    name: host.name,
    restapi: {
      listen: `${host.address}:${HA_PORTS.patroniRest}`,
      connect_address: `${host.address}:${HA_PORTS.patroniRest}`,
    },
    etcd3: {
      hosts: hostsWithRole('postgres').map((h) => `${h.address}:${HA_PORTS.etcdClient}`),
    },
    bootstrap: {
      // The cluster-wide settings, written to etcd by the node that bootstraps the cluster.
      dcs: {
        ttl: PATRONI_TIMINGS.ttl,
        loop_wait: PATRONI_TIMINGS.loopWait,
        retry_timeout: PATRONI_TIMINGS.retryTimeout,
        // Concurrency: synchronous mode. A commit returns only once one replica (the "sync standby") has
        // it too, and Patroni promotes only that replica: a failover never loses a commit a buyer was told
        // about. Without it, replication is asynchronous and a promoted replica may lack the last orders.
        synchronous_mode: true,
        maximum_lag_on_failover: 1048576,
        postgresql: {
          use_pg_rewind: true,
          use_slots: true,
          parameters: {
            max_connections: 300,
            shared_buffers: '128MB',
            wal_level: 'replica',
            hot_standby: 'on',
            hot_standby_feedback: 'on',
            max_wal_senders: 10,
            max_replication_slots: 10,
            // pg_rewind needs both to bring a failed leader back as a replica of the new one: without
            // them it refuses, and the old leader comes back on its own timeline, a "replica" that
            // streams nothing and serves reads that never change (the leader-kill case found it).
            wal_log_hints: 'on',
            full_page_writes: 'on',
            // As in the single-host stack: a lab, recreated on every up (see scripts/stack/postgres.ts).
            fsync: 'off',
            synchronous_commit: 'on',
            shared_preload_libraries: 'pg_stat_statements',
          },
        },
      },
      initdb: [{ encoding: 'UTF8' }, { locale: 'C.UTF-8' }],
      pg_hba: [
        'local all all trust',
        `host replication replicator ${subnet} scram-sha-256`,
        `host all all ${subnet} scram-sha-256`,
      ],
    },
    postgresql: {
      listen: `${host.address}:${HA_PORTS.postgres}`,
      connect_address: `${host.address}:${HA_PORTS.postgres}`,
      data_dir: path.join(dir, 'data'),
      bin_dir: binDir,
      pgpass: path.join(dir, 'pgpass'),
      authentication: {
        superuser: { username: 'postgres', password: s.superuserPassword },
        replication: { username: 'replicator', password: s.replicationPassword },
        rewind: { username: 'postgres', password: s.superuserPassword },
      },
      parameters: { unix_socket_directories: dir },
      // If a rewind fails anyway, clone the leader afresh rather than run diverged.
      remove_data_directory_on_rewind_failure: true,
      remove_data_directory_on_diverged_timelines: true,
    },
    tags: { nofailover: false, noloadbalance: false, clonefrom: false, nosync: false },
  }
  writeFileSync(patroniConfig(s, host), JSON.stringify(config, null, 2), { mode: 0o600 })
  const { uid, gid } = await userIds('postgres')
  for (const entry of [s.pgRoot, dir, patroniConfig(s, host)]) chownSync(entry, uid, gid)
}

export interface PatroniMember {
  name: string
  role: 'leader' | 'sync_standby' | 'replica' | string
  state: string
  host: string
  lag?: number | string
}

export const etcdHealthy = async (host: HaHost) =>
  (await httpStatus(`http://${host.address}:${HA_PORTS.etcdClient}/health`)) === 200

export const allEtcdHealthy = async () =>
  (await Promise.all(hostsWithRole('postgres').map(etcdHealthy))).every(Boolean)

/** The cluster as one Patroni node's REST API sees it (GET /cluster), or [] when none answers. */
export async function patroniMembers(): Promise<PatroniMember[]> {
  for (const host of hostsWithRole('postgres')) {
    try {
      const response = await fetch(`http://${host.address}:${HA_PORTS.patroniRest}/cluster`, {
        signal: AbortSignal.timeout(1000),
      })
      if (response.ok) return ((await response.json()) as { members: PatroniMember[] }).members
    } catch {
      // Ask the next node.
    }
  }
  return []
}

export const patroniLeader = async () => (await patroniMembers()).find((m) => m.role === 'leader')

/** Replication lag (bytes) under which a replica counts as streaming: HAProxy's read-only check too. */
export const REPLICA_MAX_LAG_BYTES = 1024 * 1024

/**
 * A leader and two replicas that stream from it: running, and within REPLICA_MAX_LAG_BYTES of the
 * leader. A replica on another timeline is "running" too, but its lag only grows.
 */
export async function patroniWhole(): Promise<boolean> {
  const members = await patroniMembers()
  const streaming = members.filter(
    (m) =>
      m.role !== 'leader' &&
      m.state === 'running' &&
      typeof m.lag === 'number' &&
      m.lag < REPLICA_MAX_LAG_BYTES,
  )
  return members.some((m) => m.role === 'leader' && m.state === 'running') && streaming.length === 2
}

/** The postmaster's PID of a node (its data directory's postmaster.pid), if it runs. */
export function postmasterPid(s: PostgresHaSetup, host: HaHost): number | undefined {
  const file = path.join(nodeDir(s, host), 'data', 'postmaster.pid')
  if (!existsSync(file)) return undefined
  const pid = Number.parseInt(readFileSync(file, 'utf8').split('\n')[0] ?? '', 10)
  return Number.isInteger(pid) && pid > 0 && isAlive(pid) ? pid : undefined
}

/** etcd members, then a Patroni per node; waits for a leader and two streaming replicas. */
export async function ensurePostgresHa(s: PostgresHaSetup, log: Log): Promise<void> {
  const nodes = hostsWithRole('postgres')
  mkdirSync(s.etcdDir, { recursive: true })
  for (const host of nodes) await startDaemon(etcdDaemon(s, host), log)
  await waitFor('etcd: every member healthy', allEtcdHealthy, 30_000)
  // The first node bootstraps the cluster (initdb) while the others wait for it in etcd; then they clone
  // it with pg_basebackup. Starting them together is what Patroni is made for: one of them wins the
  // initialize key.
  for (const host of nodes) {
    if (!existsSync(patroniConfig(s, host))) await writePatroniConfig(s, host)
    await startDaemon(patroniDaemon(s, host), log)
  }
  await waitFor('patroni: a leader and two streaming replicas', patroniWhole, 120_000)
  const leader = await patroniLeader()
  log(`patroni: ${leader?.name} leads, ${nodes.length - 1} replicas stream`)
}

export async function stopPostgresHa(s: PostgresHaSetup, log: Log): Promise<void> {
  // Patroni stops its Postgres on SIGTERM (a fast shutdown); then etcd.
  await Promise.all(hostsWithRole('postgres').map((h) => stopDaemon(patroniDaemon(s, h), log, 30_000)))
  for (const host of hostsWithRole('postgres')) {
    const orphan = postmasterPid(s, host)
    if (orphan !== undefined) {
      log(`${host.name}: postgres outlived patroni, stopping it`)
      process.kill(orphan, 'SIGQUIT')
      await waitFor(`${host.name} postgres to exit`, () => !isAlive(orphan), 10_000).catch(() =>
        process.kill(orphan, 'SIGKILL'),
      )
    }
  }
  // etcd takes seconds to leave gracefully, and `down` deletes its data next: a short grace is enough.
  await Promise.all(hostsWithRole('postgres').map((h) => stopDaemon(etcdDaemon(s, h), log, 1000)))
}

export const etcdPid = (s: PostgresHaSetup, host: HaHost) => daemonPid(etcdDaemon(s, host))
export const patroniPid = (s: PostgresHaSetup, host: HaHost) => daemonPid(patroniDaemon(s, host))
