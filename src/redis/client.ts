import { Redis, type Command } from 'ioredis'
import type { Config } from '../config.js'
import type { Metrics } from '../metrics.js'

export function createRedis(config: Config): Redis {
  return new Redis(config.REDIS_URL, {
    // Fail fast instead of queueing: while Redis is away a buyer gets a quick 503, not a hung request.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 2000,
    // A Redis that is connected but does not answer (paused, swapping, stuck in a slow command) keeps
    // the socket open, so only a timer notices: each command fails after this long (503 to a buyer).
    commandTimeout: config.REDIS_COMMAND_TIMEOUT_MS,
    retryStrategy: (attempt) => Math.min(attempt * 100, 1000),
    lazyConnect: true,
    // Commands issued in the same event-loop turn (hundreds, in a stampede) go out in one write and
    // come back in one read: far fewer system calls for the worker and for Redis.
    enableAutoPipelining: true,
  })
}

/**
 * A second connection for SUBSCRIBE, made from the app's client. Unlike the app's connection it waits:
 * no request waits on it, its SUBSCRIBE is queued until Redis answers, never times out, and is sent
 * again after a reconnect (ioredis subscribes again by itself).
 */
export function duplicateForSubscribing(redis: Redis): Redis {
  return redis.duplicate({
    enableOfflineQueue: true,
    maxRetriesPerRequest: null,
    commandTimeout: undefined,
    autoResendUnfulfilledCommands: true,
  })
}

// What ioredis rejects a command with when Redis did not answer: the command timed out, the connection
// is down, it closed with the command in flight (AbortError), or reconnecting took too many attempts
// (MaxRetriesPerRequestError). Redis' own error replies (ReplyError: a script error, a wrong type) are
// bugs, not these, and stay 500s.
const UNANSWERED_NAMES = ['AbortError', 'MaxRetriesPerRequestError']
const UNANSWERED_MESSAGES = ['Command timed out', "Stream isn't writeable", 'Connection is closed']

/** True when `err` is ioredis saying Redis did not answer, rather than Redis refusing a command. */
export function isRedisUnavailable(err: unknown): boolean {
  if (!(err instanceof Error)) return false
  return (
    UNANSWERED_NAMES.includes(err.name) || UNANSWERED_MESSAGES.some((text) => err.message.startsWith(text))
  )
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
