import { existsSync, readdirSync, statSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { REPO_ROOT } from './paths.js'
import { run, type Log } from './process.js'

// PM2 7 runs .ts files only on Node >= 22.18, so the workers run the compiled dist/src/server.js.
// `npm run build` costs seconds even when nothing changed, so it is skipped when no input is newer than
// the stamp written after the last successful build.

const INPUTS = ['src', 'tsconfig.json', 'tsconfig.build.json', 'package.json', 'package-lock.json']

function newestMtime(file: string): number {
  if (!existsSync(file)) return 0
  const stat = statSync(file)
  if (!stat.isDirectory()) return stat.mtimeMs
  return Math.max(stat.mtimeMs, ...readdirSync(file).map((entry) => newestMtime(path.join(file, entry))))
}

export async function buildApp(stamp: string, log: Log): Promise<void> {
  const built = existsSync(stamp) && existsSync(path.join(REPO_ROOT, 'dist', 'src', 'server.js'))
  if (
    built &&
    Math.max(...INPUTS.map((input) => newestMtime(path.join(REPO_ROOT, input)))) < statSync(stamp).mtimeMs
  ) {
    return
  }
  log('app: npm run build')
  await run('npm', ['run', 'build'], { cwd: REPO_ROOT })
  writeFileSync(stamp, `${new Date().toISOString()}\n`)
}
