import { Redis, type Command } from 'ioredis'
import type { Config } from '../config.js'
import type { Metrics } from '../metrics.js'

export function createRedis(config: Config): Redis {
  return new Redis(config.REDIS_URL, {
    // Fail fast instead of queueing: while Redis is away a buyer gets a quick 503, not a hung request.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 2000,
    retryStrategy: (attempt) => Math.min(attempt * 100, 1000),
    lazyConnect: true,
    // Commands issued in the same event-loop turn (hundreds, in a stampede) go out in one write and
    // come back in one read: far fewer system calls for the worker and for Redis.
    enableAutoPipelining: true,
  })
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
