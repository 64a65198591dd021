import { mkdir, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { createLoadTestUsers } from '../src/auth/load-test-users.js'
import { loadConfigOrExit } from '../src/config.js'
import { createPool } from '../src/db/pool.js'
import { stackJwtSecret, stackProfile } from './stack/stack.js'

// npm run tokens -- --count 1000 --out loadtest/results/tokens.json
// Creates that many customers and writes [{ id, token }] for load tests.
const { values } = parseArgs({
  options: {
    count: { type: 'string', default: '1000' },
    out: { type: 'string', default: 'loadtest/results/tokens.json' },
  },
})
const count = Number(values.count)
if (!Number.isInteger(count) || count < 1 || count > 1_000_000) {
  console.error('--count must be an integer between 1 and 1000000')
  process.exit(1)
}
// Tokens for the dev stack are signed with its own secret (<STACK_DIR>/jwt-secret) unless JWT_SECRET is set.
process.env.JWT_SECRET = stackJwtSecret(stackProfile('dev'))
const config = loadConfigOrExit({ signsTokens: true })
const pool = createPool(config.DATABASE_URL, 2, config, 'tokens')
try {
  const users = await createLoadTestUsers(pool, config, count)
  await mkdir(path.dirname(values.out), { recursive: true })
  await writeFile(values.out, JSON.stringify(users))
  console.log(`wrote ${users.length} tokens to ${values.out}`)
} finally {
  await pool.end()
}
