import { mkdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { portAnswers, waitFor, type Log } from '../process.js'
import { daemonPid, startDaemon, stopDaemon, type Daemon } from './netns.js'
import { REPLICA_MAX_LAG_BYTES } from './postgres-ha.js'
import { HA_PORTS, haHost, hostsWithRole } from './topology.js'

// HAProxy in front of the Patroni cluster. node-postgres connects to one host, so the app keeps its two
// URLs, DATABASE_URL (the read-write port) and DATABASE_REPLICA_URL (the read-only port), and HAProxy
// decides where they lead by asking each node's Patroni REST API: GET /primary answers 200 only on the
// leader, GET /replica only on a running replica.

export interface HaproxySetup {
  runDir: string
  dir: string
}

const configFile = (h: HaproxySetup) => path.join(h.dir, 'haproxy.cfg')

export function haproxyDaemon(h: HaproxySetup): Daemon {
  return {
    host: haHost('proxy'),
    service: 'haproxy',
    expect: configFile(h),
    command: 'haproxy',
    args: ['-f', configFile(h)],
    runDir: h.runDir,
  }
}

export function haproxyConfig(): string {
  const proxy = haHost('proxy').address
  const servers = hostsWithRole('postgres')
    .map((n) => `    server ${n.name} ${n.address}:${HA_PORTS.postgres} check port ${HA_PORTS.patroniRest}`)
    .join('\n')
  return `# Written by scripts/stack/ha/haproxy.ts on every start: edit that file, not this one.
global
    maxconn 4000

defaults
    mode tcp
    timeout connect 2s
    # Pooled connections sit idle between bursts: the pools close them first (idleTimeoutMillis).
    timeout client 30m
    timeout server 30m
    timeout check 1s
    # Every node is checked every second and marked down after two failed checks (up after one good one).
    # Concurrency: on-marked-down shutdown-sessions. When the leader stops answering /primary (it died, or
    # Patroni demoted it), HAProxy closes every connection it carried; without it the app's pooled
    # connections would stay on a node that is no longer the primary and their writes would fail (or, on
    # a node cut off from the others, go where no replica will ever see them).
    default-server inter 1s fall 2 rise 1 on-marked-down shutdown-sessions

# Read-write: the Patroni leader, and nothing else.
listen primary
    bind ${proxy}:${HA_PORTS.haproxyPrimary}
    option httpchk GET /primary
    http-check expect status 200
${servers}

# Read-only: the replicas that stream, one connection after another. /replica alone answers 200 for
# any running replica, even one on a diverged timeline that replays nothing; ?lag= also asks that it be
# within ${REPLICA_MAX_LAG_BYTES} bytes of the leader.
listen replicas
    bind ${proxy}:${HA_PORTS.haproxyReplicas}
    balance roundrobin
    option httpchk GET /replica?lag=${REPLICA_MAX_LAG_BYTES}
    http-check expect status 200
${servers}

listen stats
    mode http
    bind ${proxy}:${HA_PORTS.haproxyStats}
    stats enable
    stats uri /
    stats refresh 2s
`
}

export async function ensureHaproxy(h: HaproxySetup, log: Log): Promise<void> {
  mkdirSync(h.dir, { recursive: true })
  writeFileSync(configFile(h), haproxyConfig())
  await startDaemon(haproxyDaemon(h), log)
  const proxy = haHost('proxy').address
  await waitFor('haproxy', () => portAnswers(HA_PORTS.haproxyPrimary, proxy), 10_000)
  // HAProxy counts every server up until its first checks say otherwise: until then the read-write port
  // may lead to a replica. Wait for the checks: one server up behind it, two behind the read-only port.
  await waitFor(
    'haproxy: the leader alone behind the read-write port, the replicas behind the read-only one',
    async () => {
      const up = await serversUp()
      return up.primary?.length === 1 && up.replicas?.length === 2
    },
    15_000,
  )
}

/** The servers HAProxy counts up, per listener (from its stats page as CSV). */
export async function serversUp(): Promise<Record<string, string[]>> {
  const proxy = haHost('proxy').address
  try {
    const response = await fetch(`http://${proxy}:${HA_PORTS.haproxyStats}/;csv`, {
      signal: AbortSignal.timeout(1000),
    })
    const up: Record<string, string[]> = {}
    for (const line of (await response.text()).split('\n')) {
      const [listener, server, ...fields] = line.split(',')
      // Column 18 of the CSV (status) is the 16th after the first two.
      if (!listener || !server || ['FRONTEND', 'BACKEND', 'svname'].includes(server)) continue
      if (fields[15] === 'UP') (up[listener] ??= []).push(server)
    }
    return up
  } catch {
    return {}
  }
}

export const stopHaproxy = (h: HaproxySetup, log: Log) => stopDaemon(haproxyDaemon(h), log)
export const haproxyPid = (h: HaproxySetup) => daemonPid(haproxyDaemon(h))
