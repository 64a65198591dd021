import { createHash } from 'node:crypto'
import { chownSync, existsSync, lstatSync, mkdirSync, readlinkSync, symlinkSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { isRoot, run } from './process.js'

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
export const PUBLIC_DIR = path.join(REPO_ROOT, 'public')

/** Where each server of one stack keeps its files. Everything lives under `dir` except, maybe, postgres. */
export interface StackPaths {
  dir: string
  /** `<dir>/postgres`: the postgres area itself, or a symlink to it (see resolvePostgresRoot). */
  postgresLink: string
  redisDir: string
  pm2Home: string
  nginxDir: string
  logsDir: string
  /** Written after a successful `npm run build` (see build.ts). */
  buildStamp: string
}

export function stackPaths(dir: string): StackPaths {
  return {
    dir,
    postgresLink: path.join(dir, 'postgres'),
    redisDir: path.join(dir, 'redis'),
    pm2Home: path.join(dir, 'pm2'),
    nginxDir: path.join(dir, 'nginx'),
    logsDir: path.join(dir, 'logs'),
    buildStamp: path.join(dir, 'build.stamp'),
  }
}

/** The postgres area of a stack: data dirs of primary and replica, their sockets and logs. */
export interface PostgresPaths {
  root: string
  primaryData: string
  replicaData: string
  sockets: string
  logs: string
}

export function postgresPaths(root: string): PostgresPaths {
  return {
    root,
    primaryData: path.join(root, 'primary'),
    replicaData: path.join(root, 'replica'),
    sockets: path.join(root, 'sockets'),
    logs: path.join(root, 'logs'),
  }
}

/** The user postgres runs as: `postgres` when we are root (postgres refuses root), else ourselves. */
export const postgresUser = () => (isRoot() ? 'postgres' : undefined)

/**
 * Finds the postgres area of a stack without creating anything; undefined when it was never created.
 * A symlink at `<dir>/postgres` means the area lives elsewhere (see createPostgresRoot).
 */
export function existingPostgresRoot(paths: StackPaths): string | undefined {
  if (!existsSync(paths.postgresLink)) return undefined
  return lstatSync(paths.postgresLink).isSymbolicLink()
    ? readlinkSync(paths.postgresLink)
    : paths.postgresLink
}

/**
 * Creates the postgres area. As root, postgres runs as the `postgres` user, who must be able to reach
 * its data directory: a checkout under /root is not reachable, so then the area goes to
 * /var/tmp/stampede-<hash of the stack dir>/ and `<dir>/postgres` becomes a symlink to it.
 */
export async function createPostgresRoot(paths: StackPaths): Promise<PostgresPaths> {
  let root = existingPostgresRoot(paths)
  if (!root) {
    mkdirSync(paths.dir, { recursive: true })
    const user = postgresUser()
    const reachable =
      !user || (await run('test', ['-x', paths.dir], { asUser: user, check: false })).code === 0
    if (reachable) root = paths.postgresLink
    else {
      const hash = createHash('sha256').update(path.resolve(paths.dir)).digest('hex').slice(0, 10)
      root = `/var/tmp/stampede-${hash}`
      symlinkSync(root, paths.postgresLink)
    }
  }
  const pg = postgresPaths(root)
  for (const dir of [pg.root, pg.sockets, pg.logs]) mkdirSync(dir, { recursive: true, mode: 0o700 })
  const user = postgresUser()
  if (user) {
    const { uid, gid } = await userIds(user)
    for (const dir of [pg.root, pg.sockets, pg.logs]) chownSync(dir, uid, gid)
  }
  return pg
}

export async function userIds(user: string): Promise<{ uid: number; gid: number }> {
  const uid = Number((await run('id', ['-u', user])).stdout.trim())
  const gid = Number((await run('id', ['-g', user])).stdout.trim())
  return { uid, gid }
}
