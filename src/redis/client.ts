import { Redis, type Command, type RedisOptions } from 'ioredis'
import type { Config } from '../config.js'
import type { Metrics } from '../metrics.js'

/**
 * Where a client connects, decided here and nowhere else: the server of REDIS_URL, or, with
 * REDIS_SENTINELS set, whichever server the sentinels name as the primary of REDIS_SENTINEL_NAME (these
 * options then override REDIS_URL's host and port). The password and database of REDIS_URL apply to the
 * data nodes either way. Clients made with `redis.duplicate()` (duplicateForSubscribing) inherit the choice.
 */
export function redisTargetOf(config: Pick<Config, 'REDIS_SENTINELS' | 'REDIS_SENTINEL_NAME'>): RedisOptions {
  if (config.REDIS_SENTINELS.length === 0) return {}
  return {
    sentinels: config.REDIS_SENTINELS,
    name: config.REDIS_SENTINEL_NAME,
    // Only the primary: a replica would answer every write with READONLY.
    role: 'master',
    // Subscribes to +switch-master on the sentinels and reconnects the moment they announce a new
    // primary, even when the old one is still reachable (cut off from the others, or demoted but not
    // yet told to drop its clients); otherwise only a closed connection or an error would move us.
    failoverDetector: true,
  }
}

export function createRedis(config: Config): Redis {
  const redis = new Redis(config.REDIS_URL, {
    ...redisTargetOf(config),
    // Fail fast instead of queueing: while Redis is away a buyer gets a quick 503, not a hung request.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    // Concurrency: a command whose connection closed before its answer is not sent again on the next
    // connection (it fails, at the latest after commandTimeout). It may have run already, and it carries
    // what the caller knew then: an admit stamped with the old server's run id (see serverRunIdOf) would
    // reach a Redis restarted from its AOF, whose gates still bear that id but may have lost writes.
    autoResendUnfulfilledCommands: false,
    // Concurrency: a READONLY answer means this connection reached a replica (a primary demoted by a
    // failover): reconnect, so the sentinels name the new primary, but do not resend the command (1, not
    // 2). The refused command did not run, yet it carries the run id of the old connection and a gate
    // script resent on the new one would be judged by what the caller knew before the failover; the
    // buyer gets a 503 and retries on the new connection, whose run id re-fences the gate. NOREPLICAS
    // does not reconnect: the server is still the primary as far as anyone knows, and when the
    // sentinels promote another one the failover detector moves us.
    reconnectOnError: (err) => (err.message.startsWith('READONLY') ? 1 : false),
    connectTimeout: 2000,
    // A Redis that is connected but does not answer (paused, swapping, stuck in a slow command) keeps
    // the socket open, so only a timer notices: each command fails after this long (503 to a buyer).
    commandTimeout: config.REDIS_COMMAND_TIMEOUT_MS,
    retryStrategy: (attempt) => Math.min(attempt * 100, 1000),
    // A Redis that restarts answers LOADING while it reads its AOF; ioredis then waits for the server's
    // own estimate of the time left (often several seconds, up to 10 by default) before it asks again,
    // and every buyer meanwhile gets 503. Asking every 250 ms puts the worker back within a quarter of
    // a second of the end of loading (found by the fault campaign's redis-kill case: a 2 s load cost
    // 10 more seconds of 503s).
    maxLoadingRetryTime: 250,
    lazyConnect: true,
    // Commands issued in the same event-loop turn (hundreds, in a stampede) go out in one write and
    // come back in one read: far fewer system calls for the worker and for Redis.
    enableAutoPipelining: true,
  })
  serverRunIdOf(redis)
  connectAgainAfterUnaskedEnd(redis)
  return redis
}

/**
 * Starts a client again when it ended without being asked to (by disconnect() or quit()).
 * ioredis ends a client for good when its connection attempt is cancelled midway: with Sentinel, the
 * failover detector of the connection that died (it listens for +switch-master) cancels the attempt
 * that is already under way to replace it, which then fails with "Connection is closed." and the client
 * never tries again. The HA profile's redis-primary-kill case found it: the sentinels announced the
 * new primary 3 s after the kill, while the workers were asking them where it was, and one worker in
 * three stayed without Redis, answering 503, until it was restarted.
 */
function connectAgainAfterUnaskedEnd(redis: Redis): void {
  let asked = false
  const disconnect = redis.disconnect.bind(redis)
  redis.disconnect = (reconnect = false) => {
    if (!reconnect) asked = true
    disconnect(reconnect)
  }
  const quit = redis.quit.bind(redis)
  redis.quit = ((...args: Parameters<typeof quit>) => {
    asked = true
    return quit(...args)
  }) as typeof redis.quit
  redis.on('end', () => {
    if (asked) return
    setTimeout(() => {
      if (!asked && redis.status === 'end') redis.connect().catch(() => undefined)
    }, 100).unref()
  })
}

/** The run id of the Redis server a client is connected to, as this process knows it. */
export interface ServerRunId {
  /** The run id, or null while it is not known: no connection, or a new one that has not told yet. */
  now(): string | null
  /** The run id, once the current connection has told it (null when it cannot). */
  known(): Promise<string | null>
}

const runIdTrackers = new WeakMap<Redis, ServerRunId>()

/** The `run_id:` line of INFO server: 40 hex digits that a Redis server draws anew each time it starts. */
export function runIdIn(info: string): string | null {
  return /^run_id:([0-9a-f]+)\r?$/m.exec(info)?.[1] ?? null
}

/**
 * Tracks the run id of the Redis server behind `redis`, once per client: learnt with INFO server on
 * every connection's 'ready', forgotten on every 'close'.
 * Concurrency: the id is forgotten the moment a connection closes and learnt again from the new
 * connection's own answer, so no command sent on a new connection carries the old server's id. The
 * gate compares it with the id it was built under (gate-purchase.lua): a Redis restarted from its AOF may
 * have lost its last writes, and its gates, which still bear the old id, are rebuilt from Postgres
 * before they admit anyone. A Sentinel failover is the same case: the old primary's connection closes
 * (it died, or Sentinel made it drop its clients, or the failover detector dropped it), ioredis asks the
 * sentinels and connects to the promoted replica, and that server has a run id of its own while the
 * gates it replicated (perhaps without their last writes) bear the old primary's.
 */
export function serverRunIdOf(redis: Redis): ServerRunId {
  const tracked = runIdTrackers.get(redis)
  if (tracked) return tracked
  let runId: string | null = null
  // Counts closed connections: an answer that arrives after its connection closed is dropped.
  let connection = 0
  let asking: { on: number; answer: Promise<string | null> } | null = null
  const learn = (): Promise<string | null> => {
    if (runId !== null) return Promise.resolve(runId)
    if (asking?.on === connection) return asking.answer
    if (redis.status !== 'ready') return Promise.resolve(null)
    const on = connection
    const answer = redis.info('server').then(
      (info) => {
        if (on !== connection) return null
        runId = runIdIn(info)
        if (runId === null) asking = null
        return runId
      },
      // Asked again next time: the connection may still be good.
      () => {
        if (on === connection) asking = null
        return null
      },
    )
    asking = { on, answer }
    return answer
  }
  redis.on('ready', () => void learn())
  redis.on('close', () => {
    connection++
    runId = null
    asking = null
  })
  void learn()
  const tracker: ServerRunId = {
    now() {
      if (runId === null) void learn()
      return runId
    },
    known: learn,
  }
  runIdTrackers.set(redis, tracker)
  return tracker
}

/**
 * A second connection for SUBSCRIBE, made from the app's client. Unlike the app's connection it waits:
 * no request waits on it, its SUBSCRIBE is queued until Redis answers, never times out, and is sent
 * again after a reconnect (ioredis subscribes again by itself).
 */
export function duplicateForSubscribing(redis: Redis): Redis {
  // duplicate() keeps the app client's options, so the subscriber reaches the same server: through the
  // sentinels when they are set (redisTargetOf), and to the new primary after a failover.
  const subscriber = redis.duplicate({
    enableOfflineQueue: true,
    maxRetriesPerRequest: null,
    commandTimeout: undefined,
    autoResendUnfulfilledCommands: true,
  })
  // The app's own connection already logs Redis errors; without a listener ioredis prints each one.
  subscriber.on('error', () => undefined)
  connectAgainAfterUnaskedEnd(subscriber)
  return subscriber
}

/** Times every command this client sends, by command name (redis_command_duration_seconds). */
export function timeCommands(redis: Redis, histogram: Metrics['redisCommandSeconds']): void {
  const send = redis.sendCommand.bind(redis)
  redis.sendCommand = ((command: Command, stream?: never) => {
    const end = histogram.startTimer({ command: command.name })
    const done = () => void end()
    command.promise.then(done, done)
    return send(command, stream)
  }) as typeof redis.sendCommand
}

/**
 * Waits for the first connection, but never longer than `ms`: a process starts even with Redis down
 * (it answers 503 where Redis is needed, and ioredis keeps reconnecting). Returns whether it connected.
 */
export async function connectWithin(redis: Redis, ms: number): Promise<boolean> {
  const connected = redis.connect().then(
    () => true,
    () => false,
  )
  const timeout = new Promise<boolean>((resolve) => setTimeout(() => resolve(false), ms).unref())
  return Promise.race([connected, timeout])
}
