import { spawn } from 'node:child_process'
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { isAlive, livePidFromFile, run, sleep, terminate, type Log } from '../process.js'
import {
  HA_BRIDGE,
  HA_BRIDGE_ADDRESS,
  HA_HOSTS,
  HA_PREFIX_LENGTH,
  HA_SUBNET,
  type HaHost,
} from './topology.js'

// The HA profile's "machines": a network namespace per host, joined by a bridge in this machine's own
// namespace, so a host can be cut off (iptables DROP inside its namespace) or slowed (tc tbf) like a real
// one. Needs root (CAP_NET_ADMIN). Everything here is named `stampede-*` / `sha-*` and removed on down.

/** The comment every iptables rule of ours carries, so `down` finds and removes exactly those. */
const RULE_TAG = 'stampede-ha'

const ip = (args: string[]) => run('ip', args)
const netnsNames = async () =>
  (await run('ip', ['netns', 'list'])).stdout
    .split('\n')
    .map((line) => line.split(' ')[0] ?? '')
    .filter(Boolean)

export function assertRoot(): void {
  if (process.getuid?.() !== 0) {
    throw new Error(
      'the HA profile creates network namespaces and a bridge: run it as root (sudo npm run stack:up -- --profile ha)',
    )
  }
}

/** Creates the bridge and every host's namespace and veth pair; what exists already is kept. */
export async function ensureNetwork(log: Log): Promise<void> {
  assertRoot()
  const links = (await run('ip', ['-o', 'link', 'show'])).stdout
  if (!links.includes(` ${HA_BRIDGE}:`)) {
    log(`network: bridge ${HA_BRIDGE} ${HA_BRIDGE_ADDRESS}/${HA_PREFIX_LENGTH}`)
    await ip(['link', 'add', HA_BRIDGE, 'type', 'bridge'])
    await ip(['addr', 'add', `${HA_BRIDGE_ADDRESS}/${HA_PREFIX_LENGTH}`, 'dev', HA_BRIDGE])
  }
  await ip(['link', 'set', HA_BRIDGE, 'up'])
  // Bridged frames pass this namespace's FORWARD chain (br_netfilter): let the hosts talk to each other
  // even where the machine's firewall drops forwarded traffic by default.
  const forward = ['FORWARD', '-i', HA_BRIDGE, '-o', HA_BRIDGE, '-m', 'comment', '--comment', RULE_TAG]
  if ((await run('iptables', ['-C', ...forward, '-j', 'ACCEPT'], { check: false })).code !== 0) {
    await run('iptables', ['-I', ...forward, '-j', 'ACCEPT'])
  }
  const existing = await netnsNames()
  for (const host of HA_HOSTS) {
    if (!existing.includes(host.netns)) {
      await ip(['netns', 'add', host.netns])
      await ip(['link', 'add', host.veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', host.netns])
      await ip(['link', 'set', host.veth, 'master', HA_BRIDGE, 'up'])
      await ip(['-n', host.netns, 'addr', 'add', `${host.address}/${HA_PREFIX_LENGTH}`, 'dev', 'eth0'])
      await ip(['-n', host.netns, 'link', 'set', 'lo', 'up'])
      await ip(['-n', host.netns, 'link', 'set', 'eth0', 'up'])
    }
  }
  log(`network: ${HA_HOSTS.length} hosts on ${HA_SUBNET}.0/${HA_PREFIX_LENGTH}`)
}

/** Removes every namespace, veth and the bridge, and our FORWARD rule. Processes must be stopped first. */
export async function removeNetwork(log: Log): Promise<void> {
  assertRoot()
  const existing = await netnsNames()
  for (const host of HA_HOSTS) {
    if (existing.includes(host.netns)) await ip(['netns', 'delete', host.netns])
    // Deleting the namespace deletes its end of the pair, and with it ours; this covers a half-made host.
    await run('ip', ['link', 'delete', host.veth], { check: false })
  }
  await run('ip', ['link', 'delete', HA_BRIDGE], { check: false })
  const forward = ['FORWARD', '-i', HA_BRIDGE, '-o', HA_BRIDGE, '-m', 'comment', '--comment', RULE_TAG]
  while ((await run('iptables', ['-D', ...forward, '-j', 'ACCEPT'], { check: false })).code === 0);
  log('network: namespaces, bridge and rules removed')
}

/** What is left of the network, for `status` and for the tear-down check. */
export async function networkLeftovers(): Promise<string[]> {
  const left: string[] = []
  const existing = await netnsNames()
  for (const host of HA_HOSTS) if (existing.includes(host.netns)) left.push(`netns ${host.netns}`)
  const links = (await run('ip', ['-o', 'link', 'show'])).stdout
  if (links.includes(` ${HA_BRIDGE}:`)) left.push(`bridge ${HA_BRIDGE}`)
  for (const host of HA_HOSTS) if (links.includes(` ${host.veth}@`)) left.push(`veth ${host.veth}`)
  const rules = (await run('iptables', ['-S', 'FORWARD'], { check: false })).stdout
  if (rules.includes(RULE_TAG)) left.push('iptables FORWARD rule')
  return left
}

/** Runs a command inside a host's namespace and waits for it. */
export function runIn(host: HaHost, command: string, args: string[], options: { check?: boolean } = {}) {
  return run('ip', ['netns', 'exec', host.netns, command, ...args], options)
}

/** The argv that runs `command` in the host's namespace as `user`: ip and setpriv both exec, keeping the PID. */
function inNamespace(host: HaHost, user: string | undefined, command: string, args: string[]): string[] {
  const asUser = user ? ['setpriv', `--reuid=${user}`, `--regid=${user}`, '--init-groups', '--'] : []
  return ['netns', 'exec', host.netns, ...asUser, command, ...args]
}

export interface Daemon {
  host: HaHost
  /** etcd, patroni, redis, sentinel, haproxy. */
  service: string
  /** A string of the command line that identifies this very server (its config file, say). */
  expect: string
  command: string
  args: string[]
  user?: string
  /** Where the stack keeps its pid file and log. */
  runDir: string
}

const pidFileOf = (d: Daemon) => path.join(d.runDir, `${d.host.name}-${d.service}.pid`)
const logFileOf = (d: Daemon) => path.join(d.runDir, `${d.host.name}-${d.service}.log`)

export const daemonPid = (d: Daemon) => livePidFromFile(pidFileOf(d), d.expect)

/**
 * Starts a server in the foreground of a detached process inside the host's namespace, its output in
 * <runDir>/<host>-<service>.log, its PID in a pid file (the PID of the server itself: ip and setpriv
 * exec it). A server that is already running is left alone.
 */
export async function startDaemon(d: Daemon, log: Log): Promise<number> {
  const running = daemonPid(d)
  if (running !== undefined) return running
  mkdirSync(d.runDir, { recursive: true })
  const out = openSync(logFileOf(d), 'a')
  try {
    const child = spawn('ip', inNamespace(d.host, d.user, d.command, d.args), {
      detached: true,
      stdio: ['ignore', out, out],
    })
    const pid = await new Promise<number>((resolve, reject) => {
      child.once('error', reject)
      child.once('spawn', () => resolve(child.pid!))
    })
    child.unref()
    writeFileSync(pidFileOf(d), `${pid}\n`)
    log(`${d.host.name}: ${d.service} started (pid ${pid})`)
    // ip exits at once if the namespace is missing; the server itself may fail on its config.
    await sleep(100)
    if (!isAlive(pid)) throw new Error(`${d.host.name} ${d.service} exited at start:\n${logTail(d)}`)
    return pid
  } finally {
    closeSync(out)
  }
}

function logTail(d: Daemon, lines = 20): string {
  const file = logFileOf(d)
  return existsSync(file) ? readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n') : ''
}

/** SIGTERM, then SIGKILL after `graceMs`; removes the pid file. */
export async function stopDaemon(d: Daemon, log: Log, graceMs = 10_000): Promise<void> {
  const pid = daemonPid(d)
  if (pid !== undefined) {
    log(`${d.host.name}: stopping ${d.service}`)
    await terminate(pid, graceMs)
  }
  rmSync(pidFileOf(d), { force: true })
}

// Faults between hosts. A partition is a pair of DROP rules inside the host's namespace (in and out),
// tagged so heal() removes exactly them. (A slow link would be a tc tbf qdisc on the host's eth0; tc's
// netem, for delay and loss, is not in every kernel.)

/**
 * Cuts `host` off from `peers` (addresses or networks), or from every other host and this machine when
 * none are named. Only eth0 is cut: the host still talks to itself (its own address goes over lo).
 */
export async function partition(host: HaHost, peers: string[] = [`${HA_SUBNET}.0/${HA_PREFIX_LENGTH}`]) {
  for (const peer of peers) {
    const tag = ['-m', 'comment', '--comment', RULE_TAG, '-j', 'DROP']
    await runIn(host, 'iptables', ['-I', 'INPUT', '-i', 'eth0', '-s', peer, ...tag])
    await runIn(host, 'iptables', ['-I', 'OUTPUT', '-o', 'eth0', '-d', peer, ...tag])
  }
}

/** Removes every rule partition() added on `host`. */
export async function heal(host: HaHost): Promise<void> {
  for (const chain of ['INPUT', 'OUTPUT']) {
    const rules = (await runIn(host, 'iptables', ['-S', chain])).stdout.split('\n')
    for (const rule of rules.filter((r) => r.includes(RULE_TAG))) {
      await runIn(host, 'iptables', ['-D', ...splitRule(rule).slice(1)])
    }
  }
}

/** `iptables -S` prints a rule as `-A INPUT -s ... -m comment --comment stampede-ha -j DROP`. */
function splitRule(rule: string): string[] {
  return rule.trim().split(/\s+/)
}
