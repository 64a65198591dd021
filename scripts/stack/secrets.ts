import { randomBytes } from 'node:crypto'
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'

// Each stack folder has a JWT secret of its own, made on first use and kept in the folder (git-ignored
// with the rest of .stack/). The workers, the jobs process, `npm run tokens`, the load tests and the test
// processes all read it from there, so no stack runs with a secret anyone can read in the repository.

export const jwtSecretFile = (stackDir: string) => path.join(stackDir, 'jwt-secret')

/** The secret in `<stackDir>/jwt-secret`, created (48 random bytes, base64url, mode 0600) when absent. */
export function stackFolderJwtSecret(stackDir: string): string {
  const file = jwtSecretFile(stackDir)
  if (!existsSync(file)) {
    mkdirSync(stackDir, { recursive: true })
    // `wx`: when two processes create it at once, the second fails here and reads the first's secret.
    try {
      writeFileSync(file, `${randomBytes(48).toString('base64url')}\n`, { flag: 'wx', mode: 0o600 })
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
    }
  }
  chmodSync(file, 0o600)
  return readFileSync(file, 'utf8').trim()
}
