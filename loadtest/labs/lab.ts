import type { StackHandles, StackOptions, StackUrls } from '../../scripts/stack/stack.js'
import type { AdminApi } from '../admin.js'
import type { LoadTarget } from '../target.js'

// What every lab is: run a broken variant, then the real code, and say for each what it showed. The
// runner (runner.ts) brings up the labs' own stack, runs the labs and decides pass or fail.

export interface LabContext {
  options: StackOptions
  urls: StackUrls
  handles: StackHandles
  target: LoadTarget
  admin: AdminApi
  /** Smaller numbers, for the test run: the same lesson in fewer seconds. */
  quick: boolean
  log(message: string): void
  /** Restarts the workers with these settings on top of the labs' own (only what changed restarts). */
  withAppEnv(appEnv: Record<string, string>): Promise<void>
}

/** One variant's outcome: the line that shows it, and whether it did what the lab expects of it. */
export interface VariantResult {
  line: string
  /** Broken variant: it visibly broke. Fixed variant: it held. */
  asExpected: boolean
}

export interface LabResult {
  broken: VariantResult
  fixed: VariantResult
}

export interface Lab {
  name: string
  /** One line: what breaks, and what fixes it. */
  title: string
  run(ctx: LabContext): Promise<LabResult>
}
