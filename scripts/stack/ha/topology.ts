// The HA profile's hosts: one Linux network namespace each, with one address on a bridge the stack creates.
// Every address and port of the profile is here, so the stack, the fault cases and the docs agree.

/** The bridge's /24: the bridge itself is .1 (how this machine's own namespace reaches the hosts). */
export const HA_SUBNET = '10.231.0'
export const HA_PREFIX_LENGTH = 24
export const HA_BRIDGE = 'stampede-ha'
export const HA_BRIDGE_ADDRESS = `${HA_SUBNET}.1`

export type HostRole = 'edge' | 'proxy' | 'postgres' | 'redis' | 'app'

export interface HaHost {
  /** Short name: pg1, redis2, app3... */
  name: string
  /** The network namespace: `stampede-<name>`. */
  netns: string
  /** The host end of its veth pair, on the bridge (interface names stop at 15 characters). */
  veth: string
  address: string
  role: HostRole
}

const host = (name: string, last: number, role: HostRole): HaHost => ({
  name,
  netns: `stampede-${name}`,
  veth: `sha-${name}`,
  address: `${HA_SUBNET}.${last}`,
  role,
})

export const HA_HOSTS: readonly HaHost[] = [
  // nginx, the entry point: the load tests and a browser reach it at 10.231.0.10.
  host('edge', 10, 'edge'),
  // HAProxy in front of the Postgres nodes: a read-write port to the Patroni leader, a read-only one to
  // the replicas.
  host('proxy', 11, 'proxy'),
  // etcd member + Patroni + Postgres 15 on each.
  host('pg1', 21, 'postgres'),
  host('pg2', 22, 'postgres'),
  host('pg3', 23, 'postgres'),
  // redis-server + Sentinel on each; redis1 starts as the primary.
  host('redis1', 31, 'redis'),
  host('redis2', 32, 'redis'),
  host('redis3', 33, 'redis'),
  // A PM2 cluster (API workers) and a jobs process on each.
  host('app1', 41, 'app'),
  host('app2', 42, 'app'),
  host('app3', 43, 'app'),
]

export const hostsWithRole = (role: HostRole) => HA_HOSTS.filter((h) => h.role === role)

export function haHost(name: string): HaHost {
  const found = HA_HOSTS.find((h) => h.name === name)
  if (!found) throw new Error(`no HA host named ${name} (hosts: ${HA_HOSTS.map((h) => h.name).join(', ')})`)
  return found
}

/** Every server listens on its host's address, on the port its software usually takes. */
export const HA_PORTS = {
  etcdClient: 2379,
  etcdPeer: 2380,
  postgres: 5432,
  patroniRest: 8008,
  /** HAProxy: the Patroni leader (read-write). */
  haproxyPrimary: 5000,
  /** HAProxy: the replicas (read-only), balanced; the leader when no replica is healthy. */
  haproxyReplicas: 5001,
  haproxyStats: 7000,
  redis: 6379,
  sentinel: 26379,
  /** The app's own defaults (src/config.ts): worker N on 23000 + N, its metrics on 29100 + N. */
  api: 23000,
  metrics: 29100,
  jobsMetrics: 29199,
  nginx: 28080,
  nginxAdmin: 28081,
} as const

/** The Patroni cluster's name (its etcd keys live under /stampede/<scope>/) and the Sentinel master name. */
export const PATRONI_SCOPE = 'stampede'
export const SENTINEL_MASTER_NAME = 'stampede'
/** API workers per app host: three hosts share this machine's two cores. */
export const HA_API_INSTANCES = 1
