import { existsSync, readdirSync } from 'node:fs'
import path from 'node:path'
import { isRoot, run, type Log } from './process.js'

/** The Debian packages that provide the servers of the local stack, and those the HA profile adds. */
const PACKAGES = {
  postgres: 'postgresql-15',
  redis: 'redis-server',
  // nginx with its Lua module and Lua's JSON library: the edge (src/purchase/edge/edge.lua).
  nginx: 'nginx libnginx-mod-http-lua lua-cjson',
  patroni: 'patroni',
  etcd: 'etcd-server',
  haproxy: 'haproxy',
  iptables: 'iptables',
} as const
export type SystemServer = keyof typeof PACKAGES

/**
 * The browser the browser tests drive (test/support/browser.ts) through the shop that nginx serves. It is
 * installed with nginx when it can be (as root, with apt-get), but the stack does not need it: without
 * it the browser tests are skipped locally (and fail in CI).
 */
const BROWSER_PACKAGE = 'chromium'
const CHROMIUM_PATH = '/usr/bin/chromium'

export class MissingPackagesError extends Error {
  constructor(readonly packages: string[]) {
    super(
      [
        `The local stack needs system packages that are not installed: ${packages.join(' ')}`,
        `Install them (Debian/Ubuntu): sudo apt-get update && sudo apt-get install -y ${packages.join(' ')}`,
        'or use servers you already run: set DATABASE_URL, DATABASE_REPLICA_URL and REDIS_URL.',
      ].join('\n'),
    )
    this.name = 'MissingPackagesError'
  }
}

const NGINX_LUA_MODULE = '/usr/lib/nginx/modules/ngx_http_lua_module.so'
/** lua-cjson's library, under the machine's multiarch folder (/usr/lib/x86_64-linux-gnu/lua/5.1/cjson.so). */
const luaCjsonInstalled = () =>
  readdirSync('/usr/lib', { withFileTypes: true }).some(
    (entry) => entry.isDirectory() && existsSync(path.join('/usr/lib', entry.name, 'lua', '5.1', 'cjson.so')),
  )

const POSTGRES_TOOLS = ['initdb', 'pg_ctl', 'pg_basebackup', 'postgres']

/** The directory holding initdb, pg_ctl and friends: the Debian path for 15, else what pg_config says. */
export async function postgresBinDir(): Promise<string | undefined> {
  const candidates = ['/usr/lib/postgresql/15/bin']
  const fromPgConfig = await run('pg_config', ['--bindir'], { check: false }).catch(() => undefined)
  if (fromPgConfig?.code === 0) candidates.push(fromPgConfig.stdout.trim())
  return candidates.find((dir) => POSTGRES_TOOLS.every((tool) => existsSync(path.join(dir, tool))))
}

async function onPath(command: string): Promise<boolean> {
  return (await run('sh', ['-c', `command -v ${command}`], { check: false })).code === 0
}

async function isInstalled(server: SystemServer): Promise<boolean> {
  if (server === 'postgres') return (await postgresBinDir()) !== undefined
  if (server === 'redis') return (await onPath('redis-server')) && (await onPath('redis-cli'))
  if (server === 'nginx')
    return (await onPath('nginx')) && existsSync(NGINX_LUA_MODULE) && luaCjsonInstalled()
  return onPath(server)
}

/**
 * Makes sure the binaries of `servers` exist. As root on Debian/Ubuntu it installs what is missing
 * with apt-get; anywhere else it throws a MissingPackagesError that says what to install. With nginx
 * comes chromium (for the browser tests) when it can be installed; a failure to install it only logs.
 */
export async function ensureSystemPackages(servers: SystemServer[], log: Log): Promise<void> {
  const missing = await missingPackages(servers)
  const canInstall = isRoot() && existsSync('/etc/debian_version') && (await onPath('apt-get'))
  if (missing.length > 0) {
    if (!canInstall) throw new MissingPackagesError(missing)
    await aptInstall(missing, log)
    const stillMissing = await missingPackages(servers)
    if (stillMissing.length > 0) throw new MissingPackagesError(stillMissing)
  }
  // Apart, and never fatal: not every distribution has a package of this name (Ubuntu ships a snap).
  if (canInstall && servers.includes('nginx') && !existsSync(CHROMIUM_PATH))
    await aptInstall([BROWSER_PACKAGE], log).catch((error: Error) =>
      log(`could not install ${BROWSER_PACKAGE} (the browser tests will be skipped): ${error.message}`),
    )
}

async function missingPackages(servers: SystemServer[]): Promise<string[]> {
  const missing: string[] = []
  for (const server of servers) if (!(await isInstalled(server))) missing.push(...PACKAGES[server].split(' '))
  return missing
}

async function aptInstall(packages: string[], log: Log): Promise<void> {
  log(`installing ${packages.join(' ')} with apt-get (this takes a minute, once)`)
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  await run('apt-get', ['update'], { env })
  await run('apt-get', ['install', '-y', ...packages], { env })
}
