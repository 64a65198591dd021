import { chownSync, existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import pg from 'pg'
import { postgresUser, userIds, type PostgresPaths } from './paths.js'
import { livePidFromFile, processesStartingWith, run, waitFor, type Log } from './process.js'

// A Postgres 15 primary and a streaming hot-standby replica, each a plain data directory run by pg_ctl.

export const REPLICATION_USER = 'replicator'
export const REPLICATION_PASSWORD = 'replicator'
// The same names as the compose topology (deploy/compose/postgres-primary-init.sh).
export const REPLICATION_SLOT = 'replica_slot'

export interface PostgresSetup {
  paths: PostgresPaths
  binDir: string
  /** Stack name, part of cluster_name so `ps` shows which stack a postgres process belongs to. */
  stackName: string
  primaryPort: number
  replicaPort: number
  /** The application's role and database, from DATABASE_URL's default. */
  app: { user: string; password: string; database: string }
  /** fsync, full_page_writes and synchronous_commit on (the benchmark), or the fast settings (tests, demo). */
  durable: boolean
}

type Role = 'primary' | 'replica'

const dataDir = (s: PostgresSetup, role: Role) =>
  role === 'primary' ? s.paths.primaryData : s.paths.replicaData
const portOf = (s: PostgresSetup, role: Role) => (role === 'primary' ? s.primaryPort : s.replicaPort)
const clusterName = (s: PostgresSetup, role: Role) => `stampede-${s.stackName}-${role}`
// Written once the data directory is complete; a directory without it is a half-finished init and is redone.
const readyMarker = (s: PostgresSetup, role: Role) => path.join(s.paths.root, `${role}.ready`)

function pgTool(s: PostgresSetup, tool: string, args: string[]) {
  // Postgres refuses to run as root. The cwd must be readable by the user we switch to.
  return run(path.join(s.binDir, tool), args, { asUser: postgresUser(), cwd: s.paths.root })
}

/** The postmaster's PID when this cluster is running. */
export function postgresPid(s: PostgresSetup, role: Role): number | undefined {
  return livePidFromFile(path.join(dataDir(s, role), 'postmaster.pid'), dataDir(s, role))
}

/** Creates (if needed) and starts the primary, then makes sure the app and replication roles exist. */
export async function ensurePrimary(s: PostgresSetup, log: Log): Promise<void> {
  if (!existsSync(readyMarker(s, 'primary'))) {
    await removeDataDir(s, 'primary')
    // A new primary has a new system identifier: the old replica can never follow it.
    await removeDataDir(s, 'replica')
    log(`primary: initdb ${s.paths.primaryData}`)
    // --no-sync: a crash mid-init is detected by the missing marker, and the directory is made anew.
    await pgTool(s, 'initdb', [
      ...['-D', s.paths.primaryData, '-U', 'postgres', '-E', 'UTF8', '--no-locale', '--no-sync'],
      ...['--auth-local=trust', '--auth-host=scram-sha-256'],
    ])
    await writeOwned(
      s,
      path.join(s.paths.primaryData, 'pg_hba.conf'),
      [
        '# Written by scripts/stack/postgres.ts. Only 127.0.0.1 and the private socket directory.',
        'local   all          all                         trust',
        'host    all          all          127.0.0.1/32   scram-sha-256',
        `host    replication  ${REPLICATION_USER}   127.0.0.1/32   scram-sha-256`,
        '',
      ].join('\n'),
    )
    const conf = path.join(s.paths.primaryData, 'postgresql.conf')
    await writeOwned(s, conf, `${readFileSync(conf, 'utf8')}\ninclude 'stampede.conf'\n`)
  }
  await startCluster(s, 'primary', log)
  await bootstrapRoles(s)
  writeFileSync(readyMarker(s, 'primary'), `${new Date().toISOString()}\n`)
}

/**
 * Creates (if needed) and starts the hot standby: a pg_basebackup -R copy of the primary that streams
 * WAL through a physical replication slot, so the primary keeps the WAL the replica has not received yet.
 */
export async function ensureReplica(s: PostgresSetup, log: Log): Promise<void> {
  const autoConf = path.join(s.paths.replicaData, 'postgresql.auto.conf')
  const recovery = existsSync(autoConf) ? readFileSync(autoConf, 'utf8') : ''
  const followsPrimary =
    recovery.includes(`port=${s.primaryPort} `) &&
    recovery.includes(`primary_slot_name = '${REPLICATION_SLOT}'`)
  if (!existsSync(readyMarker(s, 'replica')) || !followsPrimary) {
    await removeDataDir(s, 'replica')
    log(`replica: pg_basebackup from 127.0.0.1:${s.primaryPort}`)
    const source = `host=127.0.0.1 port=${s.primaryPort} user=${REPLICATION_USER}`
    const password = `password=${REPLICATION_PASSWORD}`
    await pgTool(s, 'pg_basebackup', [
      ...[
        '-D',
        s.paths.replicaData,
        '-d',
        `${source} ${password}`,
        '-R',
        '-X',
        'stream',
        '-S',
        REPLICATION_SLOT,
      ],
      ...['--checkpoint=fast', '--no-sync'],
    ])
  }
  await startCluster(s, 'replica', log)
  writeFileSync(readyMarker(s, 'replica'), `${new Date().toISOString()}\n`)
}

/**
 * Waits until the primary reports the replica's slot as streaming. Gives up at once when the replica's
 * log, from `logSince` (bytes) on, says it can never follow (see REPLICA_CANNOT_FOLLOW).
 */
export async function waitForStreaming(
  s: PostgresSetup,
  timeoutMs = 30_000,
  logSince?: number,
): Promise<void> {
  const client = superuserClient(s)
  await client.connect()
  try {
    await waitFor(
      'the replica to stream from the primary',
      async () => {
        if (logSince !== undefined) {
          const line = replicaCannotFollow(s, logSince)
          if (line) throw new Error(`the replica cannot follow the primary: ${line}`)
        }
        const { rowCount } = await client.query(
          `SELECT 1 FROM pg_stat_replication r JOIN pg_replication_slots s ON s.active_pid = r.pid
            WHERE s.slot_name = $1 AND r.state = 'streaming'`,
          [REPLICATION_SLOT],
        )
        return rowCount === 1
      },
      timeoutMs,
    ).catch((err: Error) => {
      // The replica's own log says why (a WAL position the primary no longer has, a refused login ...).
      throw new Error(`${err.message}; the replica's log ends with:\n${logTail(s, 'replica', 15)}`)
    })
  } finally {
    await client.end()
  }
}

/**
 * What the replica logs when it can never follow its primary again, whatever it retries: the WAL it
 * resumes from is gone, it is ahead of the primary or on another timeline, or it crashed.
 */
const REPLICA_CANNOT_FOLLOW =
  /requested WAL segment \S+ has already been removed|requested starting point \S+ is ahead of the WAL flush position|is not a child of this server's history|PANIC:|aborting startup due to startup process failure/

/** The line of the replica's log since `since` (bytes) that says it can never follow, if any. */
export function replicaCannotFollow(s: PostgresSetup, since = 0): string | null {
  const file = path.join(s.paths.logs, 'replica.log')
  if (!existsSync(file)) return null
  const log = readFileSync(file, 'utf8')
  const tail = log.slice(Math.max(since, log.length - 64 * 1024))
  return (
    tail
      .split('\n')
      .reverse()
      .find((line) => REPLICA_CANNOT_FOLLOW.test(line)) ?? null
  )
}

/** How long the replica's log is now (bytes): waitForStreaming reads what it says from here on. */
export const replicaLogSize = (s: PostgresSetup) => {
  const file = path.join(s.paths.logs, 'replica.log')
  return existsSync(file) ? statSync(file).size : 0
}

/**
 * Makes sure the replica streams from the primary. A replica that cannot (its log says it can never
 * follow, or it does not stream within `timeoutMs`) is made anew from the primary with pg_basebackup,
 * as an operator would, and the reason is logged: a stack is whole again after stackUp, whatever an
 * earlier fault did to it.
 */
export async function ensureStreamingReplica(s: PostgresSetup, log: Log, timeoutMs = 30_000): Promise<void> {
  const why = await waitForStreaming(s, timeoutMs, replicaLogSize(s)).then(
    () => null,
    (err: Error) => err.message,
  )
  if (why === null) return
  log(`replica: not streaming (${why.split('\n')[0]}); making it anew from the primary`)
  rmSync(readyMarker(s, 'replica'), { force: true })
  await ensureReplica(s, log)
  await waitForStreaming(s, timeoutMs)
}

/** The last `lines` lines of a cluster's server log, or a note that it has none. */
export function logTail(s: PostgresSetup, role: Role, lines: number): string {
  const file = path.join(s.paths.logs, `${role}.log`)
  if (!existsSync(file)) return `(no ${file})`
  return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n')
}

/** Stops a cluster the way a crash would (`pg_ctl -m immediate`): no checkpoint, recovery at the next start. */
export async function crashCluster(s: PostgresSetup, role: Role): Promise<void> {
  if (postgresPid(s, role) === undefined) return
  await pgTool(s, 'pg_ctl', ['stop', '-D', dataDir(s, role), '-w', '-t', '30', '-m', 'immediate'])
}

/** Stops a cluster (fast shutdown: active sessions are cut, nothing is lost) if it runs. */
export async function stopCluster(s: PostgresSetup, role: Role, log: Log): Promise<void> {
  if (postgresPid(s, role) === undefined) return
  log(`${role}: stopping`)
  const args = ['stop', '-D', dataDir(s, role), '-w', '-t', '30']
  await pgTool(s, 'pg_ctl', [...args, '-m', 'fast']).catch(() =>
    pgTool(s, 'pg_ctl', [...args, '-m', 'immediate']),
  )
}

async function startCluster(s: PostgresSetup, role: Role, log: Log): Promise<void> {
  const data = dataDir(s, role)
  const settingsFile = path.join(data, 'stampede.conf')
  const before = existsSync(settingsFile) ? readFileSync(settingsFile, 'utf8') : ''
  await writeOwned(s, settingsFile, serverSettings(s, role))
  if (postgresPid(s, role) !== undefined) {
    // fsync, full_page_writes and synchronous_commit take effect on a reload: no restart, no lost session.
    if (before !== serverSettings(s, role)) {
      log(`${role}: reloading its settings (${s.durable ? 'durable' : 'fast'})`)
      await pgTool(s, 'pg_ctl', ['reload', '-D', data])
    }
    return
  }
  await recoverFromCrash(s, role, log)
  log(`${role}: starting on 127.0.0.1:${portOf(s, role)}`)
  const logFile = path.join(s.paths.logs, `${role}.log`)
  await pgTool(s, 'pg_ctl', ['start', '-D', data, '-l', logFile, '-w', '-t', '60']).catch((error: Error) => {
    throw new Error(`${error.message}\nSee ${logFile}`)
  })
}

/**
 * After a crash (kill -9, a reboot) postmaster.pid and the socket lock file stay behind. Postgres
 * refuses to start if the PID they name now belongs to some other process, so we remove them once we
 * know our postmaster is gone, after its children have exited (they still hold the shared memory).
 */
async function recoverFromCrash(s: PostgresSetup, role: Role, log: Log): Promise<void> {
  const pidFile = path.join(dataDir(s, role), 'postmaster.pid')
  if (!existsSync(pidFile)) return
  log(`${role}: removing postmaster.pid left by a crashed run`)
  await waitFor(
    `the old ${role}'s processes to exit`,
    () => processesStartingWith(`postgres: ${clusterName(s, role)}:`).length === 0,
    15_000,
  )
  rmSync(pidFile, { force: true })
  for (const file of [`.s.PGSQL.${portOf(s, role)}`, `.s.PGSQL.${portOf(s, role)}.lock`]) {
    rmSync(path.join(s.paths.sockets, file), { force: true })
  }
}

/** Never delete a running data directory: stop it first. */
async function removeDataDir(s: PostgresSetup, role: Role): Promise<void> {
  await stopCluster(s, role, () => {})
  rmSync(readyMarker(s, role), { force: true })
  rmSync(dataDir(s, role), { recursive: true, force: true })
}

/**
 * Durable (the benchmark): every COMMIT waits for its WAL to reach the disk (fsync, synchronous_commit)
 * and a torn page can be repaired after an OS crash (full_page_writes), as on a real server. Fast (tests,
 * the demo): fsync and full_page_writes are off, so a COMMIT costs no disk flush and an OS crash may
 * corrupt the data, which the stack recreates anyway; synchronous_commit stays on, which without fsync
 * only means the WAL is written to the OS, not to the disk.
 */
export const postgresDurability = (durable: boolean) => ({
  fsync: durable ? 'on' : 'off',
  full_page_writes: durable ? 'on' : 'off',
  synchronous_commit: 'on',
})

function serverSettings(s: PostgresSetup, role: Role): string {
  const durability = postgresDurability(s.durable)
  return [
    '# Written by scripts/stack/postgres.ts on every start: edit that file, not this one.',
    `cluster_name = '${clusterName(s, role)}'`,
    "listen_addresses = '127.0.0.1'",
    `port = ${portOf(s, role)}`,
    `unix_socket_directories = '${s.paths.sockets}'`,
    'max_connections = 200',
    'shared_buffers = 256MB',
    ...Object.entries(durability).map(([name, value]) => `${name} = ${value}`),
    'wal_level = replica',
    'max_wal_senders = 10',
    'max_replication_slots = 10',
    'hot_standby = on',
    // Without it, a long catalog read on the replica can be cancelled by VACUUM replayed from the primary.
    'hot_standby_feedback = on',
    // Time per statement, for the benchmark's "where the time goes" (npm run bench).
    "shared_preload_libraries = 'pg_stat_statements'",
    '',
  ].join('\n')
}

export function superuserClient(s: PostgresSetup, role: Role = 'primary', database = 'postgres') {
  return new pg.Client({
    host: s.paths.sockets,
    port: portOf(s, role),
    user: 'postgres',
    database,
  })
}

/** Idempotent: the app role and database, the replication role and its slot. */
async function bootstrapRoles(s: PostgresSetup): Promise<void> {
  await ensureAppRoles((database) => superuserClient(s, 'primary', database), s.app)
  const client = superuserClient(s)
  await client.connect()
  try {
    await ensureRole(client, REPLICATION_USER, REPLICATION_PASSWORD, 'LOGIN REPLICATION')
    const slot = await client.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', [
      REPLICATION_SLOT,
    ])
    // Reserved at once (the second argument), as deploy/compose does: a slot's position reaches the disk
    // only when it is created so or at a checkpoint, and without it a primary stopped the way a crash
    // would (pg_ctl -m immediate) before its first checkpoint comes back with a slot that reserves
    // nothing; its end-of-recovery checkpoint then removes the WAL the replica resumes from, and the
    // replica can never stream again ("requested WAL segment ... has already been removed").
    if (slot.rowCount === 0)
      await client.query('SELECT pg_create_physical_replication_slot($1, true)', [REPLICATION_SLOT])
  } finally {
    await client.end()
  }
}

/**
 * Idempotent: the app role (CREATEDB: tests make a database of their own to migrate from scratch;
 * pg_monitor: it reads pg_stat_replication for the replica lag without being a superuser), its database,
 * and pg_stat_statements in it, which the app role may read and reset (for the benchmark). `connect`
 * gives a superuser client on a database: over the local stack's socket, or by URL (the HA profile's
 * Patroni leader, through HAProxy).
 */
export async function ensureAppRoles(
  connect: (database: string) => pg.Client,
  app: { user: string; password: string; database: string },
): Promise<void> {
  const client = connect('postgres')
  await client.connect()
  try {
    await ensureRole(client, app.user, app.password, 'LOGIN CREATEDB')
    await client.query(`GRANT pg_monitor TO ${client.escapeIdentifier(app.user)}`)
    const db = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [app.database])
    if (db.rowCount === 0) {
      await client.query(
        `CREATE DATABASE ${client.escapeIdentifier(app.database)} OWNER ${client.escapeIdentifier(app.user)}`,
      )
    }
  } finally {
    await client.end()
  }
  const inDatabase = connect(app.database)
  await inDatabase.connect()
  try {
    await inDatabase.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements')
    await inDatabase.query(
      `GRANT EXECUTE ON FUNCTION pg_stat_statements_reset(oid, oid, bigint) TO ${inDatabase.escapeIdentifier(app.user)}`,
    )
  } finally {
    await inDatabase.end()
  }
}

async function ensureRole(client: pg.Client, user: string, password: string, attributes: string) {
  const exists = await client.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [user])
  const verb = exists.rowCount === 0 ? 'CREATE' : 'ALTER'
  // password_encryption defaults to scram-sha-256 in Postgres 15, matching pg_hba.conf.
  await client.query(
    `${verb} ROLE ${client.escapeIdentifier(user)} ${attributes} PASSWORD ${client.escapeLiteral(password)}`,
  )
}

async function writeOwned(s: PostgresSetup, file: string, content: string): Promise<void> {
  writeFileSync(file, content)
  const user = postgresUser()
  if (user) {
    const { uid, gid } = await userIds(user)
    chownSync(file, uid, gid)
  }
}
