// tsc compiles .ts only; the Lua scripts (and any other non-TS file under src/) must sit beside the
// compiled code in dist/, where the app reads them relative to its own file.
import { cpSync } from 'node:fs'

cpSync('src', 'dist/src', { recursive: true, filter: (path) => !path.endsWith('.ts') })
