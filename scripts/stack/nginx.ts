import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { PUBLIC_DIR, REPO_ROOT } from './paths.js'
import {
  isRoot,
  livePidFromFile,
  portAnswers,
  processesHoldingFilesIn,
  removeStalePidFile,
  run,
  terminate,
  waitFor,
  type Log,
} from './process.js'

// nginx in front of the workers. The committed nginx.conf is the configuration; this module only fills in
// ports and paths, and starts or reloads nginx with everything (pid, logs, temp files) under <stack>/nginx.

export const NGINX_TEMPLATE = path.join(REPO_ROOT, 'nginx.conf')
/** Where Debian's nginx keeps its dynamic modules (the Lua module and the NDK it needs). */
export const NGINX_MODULES_DIR = '/usr/lib/nginx/modules'
/** The edge's Lua (src/purchase/edge/edge.lua), loaded by nginx's workers. */
const EDGE_LUA_DIR = path.join(REPO_ROOT, 'src', 'purchase', 'edge')

export interface NginxLimits {
  buyRate: string
  buyBurst: number
  loginRate: string
  loginBurst: number
  /** New accounts (register, guest) per address. */
  signupRate: string
  signupBurst: number
  /** Live-event streams (SSE) one address may hold open. */
  streamsPerAddress: number
}

export interface NginxSetup {
  stackDir: string
  port: number
  adminPort: number
  /** host:port of every API worker. */
  upstreams: string[]
  /** host:port of the jobs process's metrics server (the merged /metrics view). */
  jobsMetrics: string
  limits: NginxLimits
  /** The address both servers listen on: 127.0.0.1 unless nginx runs on an HA host. */
  address?: string
  /** The network namespace of an HA host (scripts/stack/ha/): nginx runs inside it. */
  netns?: string
  /** Parameters of every upstream server line: `max_fails=0` unless given (see nginx.conf). */
  upstreamParameters?: string
  /** The conditions of `proxy_next_upstream`, in place of nginx.conf's (`error timeout http_502 http_503`). */
  nextUpstream?: string
}

/**
 * Limits per client address: purchase/checkout, login and new accounts (limit_req), and open event
 * streams (limit_conn). A load test drives everything from one loopback address, so it raises them
 * (NGINX_BUY_RATE=100000r/s ...) rather than measure nginx's 429s.
 */
export function nginxLimitsFromEnv(env: NodeJS.ProcessEnv): NginxLimits {
  const rate = (name: string, fallback: string) => {
    const value = env[name] || fallback
    if (!/^\d+r\/[sm]$/.test(value))
      throw new Error(`${name}=${JSON.stringify(value)}: must look like 50r/s or 600r/m`)
    return value
  }
  const count = (name: string, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER) => {
    const value = Number(env[name] || fallback)
    if (!Number.isInteger(value) || value < min || value > max)
      throw new Error(`${name}=${JSON.stringify(env[name])}: must be an integer from ${min} to ${max}`)
    return value
  }
  const burst = (name: string, fallback: number) => count(name, fallback, 0)
  return {
    buyRate: rate('NGINX_BUY_RATE', '50r/s'),
    buyBurst: burst('NGINX_BUY_BURST', 100),
    loginRate: rate('NGINX_LOGIN_RATE', '10r/s'),
    loginBurst: burst('NGINX_LOGIN_BURST', 20),
    signupRate: rate('NGINX_SIGNUP_RATE', '20r/m'),
    signupBurst: burst('NGINX_SIGNUP_BURST', 10),
    // nginx's limit_conn takes at most 65535.
    streamsPerAddress: count('NGINX_STREAMS_PER_ADDRESS', 20, 1, 65535),
  }
}

const nginxDir = (n: NginxSetup) => path.join(n.stackDir, 'nginx')
const confFile = (n: NginxSetup) => path.join(nginxDir(n), 'nginx.conf')
const pidFile = (n: NginxSetup) => path.join(nginxDir(n), 'nginx.pid')
// `-p <prefix> -c <conf> -e <log>`: nothing is read from or written to /etc/nginx or /var/log/nginx.
const nginxArgs = (n: NginxSetup) => [
  '-p',
  nginxDir(n),
  '-c',
  confFile(n),
  '-e',
  path.join(nginxDir(n), 'logs', 'error.log'),
]

// The master's title is "nginx: master process nginx -p ... -c <conf> ...": our conf file identifies it.
export const nginxPid = (n: NginxSetup) => livePidFromFile(pidFile(n), confFile(n))

/** Fills in the template; an unknown or missing placeholder is an error, never left for nginx to choke on. */
export async function renderNginxConf(n: NginxSetup): Promise<string> {
  const values: Record<string, string> = {
    NGINX_USER: await userDirective(n.stackDir),
    STACK_DIR: path.resolve(n.stackDir),
    PUBLIC_DIR,
    NGINX_MODULES_DIR,
    EDGE_LUA_DIR,
    NGINX_PORT: String(n.port),
    NGINX_ADMIN_PORT: String(n.adminPort),
    JOBS_METRICS_ADDRESS: n.jobsMetrics,
    API_UPSTREAM_SERVERS: n.upstreams
      .map((u) => `        server ${u} ${n.upstreamParameters ?? 'max_fails=0'};`)
      .join('\n'),
    NGINX_BUY_RATE: n.limits.buyRate,
    NGINX_BUY_BURST: String(n.limits.buyBurst),
    NGINX_LOGIN_RATE: n.limits.loginRate,
    NGINX_LOGIN_BURST: String(n.limits.loginBurst),
    NGINX_SIGNUP_RATE: n.limits.signupRate,
    NGINX_SIGNUP_BURST: String(n.limits.signupBurst),
    NGINX_STREAMS_PER_ADDRESS: String(n.limits.streamsPerAddress),
  }
  const rendered = readFileSync(NGINX_TEMPLATE, 'utf8').replace(/\$\{([A-Z_]+)\}/g, (_, name: string) => {
    const value = values[name]
    if (value === undefined) throw new Error(`nginx.conf: unknown placeholder \${${name}}`)
    return value
  })
  // The template listens on loopback; on an HA host both servers listen on the host's address instead
  // (deploy/compose/nginx-entrypoint.sh does the same for a container).
  const listening = n.address ? rendered.replaceAll('listen 127.0.0.1:', `listen ${n.address}:`) : rendered
  return n.nextUpstream
    ? listening.replace(/^(\s*proxy_next_upstream) [^;]+;/m, `$1 ${n.nextUpstream};`)
    : listening
}

/** Runs the nginx binary, inside the HA host's namespace when there is one. */
const nginx = (n: NginxSetup, args: string[]) =>
  n.netns ? run('ip', ['netns', 'exec', n.netns, 'nginx', ...args]) : run('nginx', args)

/**
 * As root, nginx's workers run as `nobody`, who must be able to read the storefront in public/. When the
 * checkout is not reachable for nobody (under /root, say), the workers run as root: a local stack only.
 */
async function userDirective(stackDir: string): Promise<string> {
  if (!isRoot()) return '# user: nginx runs as the user who started the stack'
  const test = ['-x', REPO_ROOT, '-a', '-x', stackDir]
  const readable = (await run('test', test, { asUser: 'nobody', check: false })).code === 0
  return readable ? 'user nobody nogroup;' : 'user root; # the checkout is not readable by nobody'
}

/** Writes the rendered configuration and asks nginx to check it (`nginx -t`). */
export async function writeAndCheckNginxConf(n: NginxSetup): Promise<string> {
  for (const dir of ['logs', 'temp']) mkdirSync(path.join(nginxDir(n), dir), { recursive: true })
  const rendered = await renderNginxConf(n)
  const previous = existsSync(confFile(n)) ? readFileSync(confFile(n), 'utf8') : ''
  writeFileSync(confFile(n), rendered)
  await nginx(n, ['-t', '-q', ...nginxArgs(n)]).catch((error: Error) => {
    throw new Error(`nginx -t failed on ${confFile(n)} (rendered from nginx.conf):\n${error.message}`)
  })
  return previous
}

/** Starts nginx, or reloads it when the rendered configuration changed. */
export async function ensureNginx(n: NginxSetup, log: Log): Promise<void> {
  const previous = await writeAndCheckNginxConf(n)
  const pid = nginxPid(n)
  if (pid !== undefined) {
    if (previous !== readFileSync(confFile(n), 'utf8')) {
      log('nginx: configuration changed, reloading')
      await nginx(n, [...nginxArgs(n), '-s', 'reload'])
    }
    return
  }
  await recoverFromCrash(n, log)
  const address = n.address ?? '127.0.0.1'
  log(`nginx: starting on ${address}:${n.port} (admin ${address}:${n.adminPort})`)
  await nginx(n, nginxArgs(n))
  await waitFor(`nginx on port ${n.port}`, () => portAnswers(n.port, address), 10_000)
}

/** `nginx -s reload`: new workers take the configuration, old ones finish their requests. */
export async function reloadNginx(n: NginxSetup): Promise<void> {
  await nginx(n, [...nginxArgs(n), '-s', 'reload'])
}

export async function stopNginx(n: NginxSetup, log: Log): Promise<void> {
  const pid = nginxPid(n)
  if (pid === undefined) return recoverFromCrash(n, log)
  log('nginx: stopping')
  // SIGQUIT: graceful, open requests finish; terminate() escalates if it takes too long.
  process.kill(pid, 'SIGQUIT')
  await waitFor('nginx to exit', () => nginxPid(n) === undefined, 10_000).catch(() => terminate(pid))
}

/**
 * When the master dies (kill -9), its workers live on, still holding the listening sockets, so a new
 * nginx cannot bind. They are ours if they hold a file of this stack's nginx folder open (the logs).
 */
async function recoverFromCrash(n: NginxSetup, log: Log): Promise<void> {
  removeStalePidFile(pidFile(n), confFile(n))
  const orphans = processesHoldingFilesIn('nginx: ', path.resolve(nginxDir(n)))
  if (orphans.length > 0) log(`nginx: stopping ${orphans.length} worker(s) left by a crashed master`)
  await Promise.all(orphans.map((pid) => terminate(pid, 3_000)))
  // The edge's Unix socket (nginx.conf) outlives a killed master, and a new one could not listen on it.
  rmSync(path.join(nginxDir(n), 'edge.sock'), { force: true })
}
