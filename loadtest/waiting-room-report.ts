import { readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { REPO_ROOT } from '../scripts/stack/paths.js'
import type { WaitingRoomReport } from './scenarios/waiting-room.js'
import type { Verification } from './verify.js'

// The waiting-room run's report: printed, and written into docs/waiting-room.md between the markers of
// its variant (fifo, raffle, with or without bots), so the page's numbers are the last run's.

const DOC = path.join(REPO_ROOT, 'docs', 'waiting-room.md')

export const variantOf = (r: Pick<WaitingRoomReport, 'mode' | 'bots'>) => `${r.mode}${r.bots ? '-bots' : ''}`

const ms = (value: number | null) => (value === null ? 'n/a' : `${Math.round(value)} ms`)

/** The run as lines of a Markdown list (the doc) or of the terminal. */
export function formatWaitingRoom(r: WaitingRoomReport, verification: Verification, when: string): string {
  const lines = [
    `- run: ${when}, sale ${r.saleId}, ${r.users.toLocaleString('en')} buyers${r.bots ? ` and ${r.bots} bots` : ''} joining in 2 s (Poisson), ${r.units} units, ${r.mode}`,
    `- joined: ${r.joined.toLocaleString('en')}; join latency p50 ${ms(r.joinP50Ms)}, p99 ${ms(r.joinP99Ms)} (from the buyer's arrival to its answer)`,
    `- fairness: Kendall's τ between arrival and admission order ${r.kendallTau.toFixed(4)} (over the ${r.tauOver.toLocaleString('en')} buyers let in); buyers never let in who arrived before the last one let in: ${r.skipped.toLocaleString('en')}`,
    `- the admitted buyers' purchases: ${Object.entries(r.outcomes)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')}`,
    `- admitted per unit: ${r.admittedPerUnit.toFixed(2)}; units sold ${r.unitsSold} of ${r.units}; admitted buyers who never bought ${r.abandoned}`,
    `- sell-out ${r.sellOutSeconds === null ? 'never' : `${r.sellOutSeconds.toFixed(2)} s after the start`}; still waiting then: ${r.waitingAtSellOut.toLocaleString('en')}; told "sold out" (${r.heard} listeners): p50 ${ms(r.heardP50Ms)}, p99 ${ms(r.heardP99Ms)} after the last unit's 201`,
    `- longest stretch without an admission while places waited: ${ms(r.longestStallMs)} (${r.stalled ? 'STALLED' : 'no stall'})`,
  ]
  if (r.bots)
    lines.push(
      `- bots: ${r.botUnits} units, ${(100 * r.botShareOfUnits).toFixed(1)} % of those sold, for ${(100 * r.botShareOfCrowd).toFixed(1)} % of the crowd; ${r.botAttempts.toLocaleString('en')} purchase attempts without an admission, ${r.botRefused.toLocaleString('en')} refused 403`,
    )
  lines.push(
    `- invariants: ${verification.ok ? 'all held' : 'VIOLATED'} (${verification.checks.map((c) => `${c.invariant} ${c.ok ? 'ok' : 'FAIL'}`).join(', ')})`,
  )
  return lines.join('\n')
}

/** Rewrites the variant's section of docs/waiting-room.md; false when the page has no markers for it. */
export function writeWaitingRoomDoc(variant: string, text: string): boolean {
  const doc = readFileSync(DOC, 'utf8')
  const begin = `<!-- waiting-room-run:${variant} -->`
  const end = `<!-- /waiting-room-run:${variant} -->`
  const from = doc.indexOf(begin)
  const to = doc.indexOf(end)
  if (from < 0 || to < from) return false
  writeFileSync(DOC, `${doc.slice(0, from + begin.length)}\n${text}\n${doc.slice(to)}`)
  return true
}
