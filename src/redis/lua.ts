import { readFileSync } from 'node:fs'

/** Reads a Lua script that sits beside the calling module (copied to dist/ by the build). */
export function luaScript(name: string, besideModule: string): string {
  return readFileSync(new URL(`./${name}`, besideModule), 'utf8')
}
