import { mkdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import {
  livePidFromFile,
  type Log,
  probeSocket,
  removeStalePidFile,
  run,
  stopFromPidFile,
  waitFor,
} from './process.js'

// One redis-server, daemonized, with its config, pid file, log and append-only file in <stack>/redis.

export interface RedisSetup {
  dir: string
  port: number
}

const pidFile = (r: RedisSetup) => path.join(r.dir, 'redis.pid')
// redis-server's command line is "redis-server 127.0.0.1:<port>", which identifies our server.
const processName = (r: RedisSetup) => `redis-server 127.0.0.1:${r.port}`

export const redisPid = (r: RedisSetup) => livePidFromFile(pidFile(r), processName(r))

export async function ensureRedis(r: RedisSetup, log: Log): Promise<void> {
  if (redisPid(r) !== undefined) return
  mkdirSync(r.dir, { recursive: true })
  removeStalePidFile(pidFile(r), processName(r))
  const conf = path.join(r.dir, 'redis.conf')
  writeFileSync(
    conf,
    [
      '# Written by scripts/stack/redis.ts on every start: edit that file, not this one.',
      'bind 127.0.0.1',
      `port ${r.port}`,
      'daemonize yes',
      `pidfile ${pidFile(r)}`,
      `dir ${r.dir}`,
      `logfile ${path.join(r.dir, 'redis.log')}`,
      // The stock gate and reservations must survive a Redis restart in the failure tests: keep an AOF,
      // and no RDB snapshots (they fork a copy of the dataset at the worst moment of a load test).
      'appendonly yes',
      // A crash may lose the last second of writes; gates then fail their run-id fence and are rebuilt.
      'appendfsync everysec',
      'save ""',
      'maxclients 10000',
      '',
    ].join('\n'),
  )
  log(`redis: starting on 127.0.0.1:${r.port}`)
  await run('redis-server', [conf])
  await waitFor(`redis on port ${r.port}`, () => redisPing(r.port), 15_000)
}

export async function stopRedis(r: RedisSetup, log: Log): Promise<void> {
  await stopFromPidFile(
    pidFile(r),
    processName(r),
    () => log('redis: stopping'),
    () => run('redis-cli', ['-h', '127.0.0.1', '-p', String(r.port), 'shutdown', 'nosave'], { check: false }),
  )
}

/** True when a Redis answers PING on 127.0.0.1:port (RESP over a plain socket, no client library). */
export function redisPing(port: number, host = '127.0.0.1', timeoutMs = 500): Promise<boolean> {
  return probeSocket(port, host, timeoutMs, (socket, done) => {
    socket.once('connect', () => socket.write('PING\r\n'))
    // -NOAUTH is an answer too: an external Redis with a password is up, we just did not log in.
    socket.once('data', (data) => done(/^(\+PONG|-NOAUTH)/.test(data.toString())))
  })
}
