import { readFileSync } from 'node:fs'
import type { Redis } from 'ioredis'

/** A Lua script that sits beside the module using it (the build copies *.lua to dist/). */
export interface ScriptFile {
  file: string
  /** How many of its arguments are keys; leave out when the caller passes the count on every call. */
  keys?: number
}

/**
 * The one way Stampede loads Lua: each script becomes a client command named after it. ioredis sends
 * EVALSHA and falls back to EVAL on NOSCRIPT, so a SCRIPT FLUSH or a Redis restart costs one extra round
 * trip, not an error. The commands' types are declared beside their callers (`declare module 'ioredis'`).
 */
export function defineScripts(redis: Redis, besideModule: string, scripts: Record<string, ScriptFile>): void {
  for (const [name, script] of Object.entries(scripts)) {
    if (name in redis) continue
    redis.defineCommand(name, {
      numberOfKeys: script.keys,
      lua: readFileSync(new URL(`./${script.file}`, besideModule), 'utf8'),
    })
  }
}
