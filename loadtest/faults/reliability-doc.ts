import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { REPO_ROOT } from '../../scripts/stack/paths.js'
import { CAMPAIGN_APP_ENV, type CaseResult, type FaultCase } from './campaign.js'

// docs/reliability.md, written by a full `npm run faults` run: what each case promises, what the run
// observed, and the seed to replay it. Text between <!-- notes --> and <!-- /notes --> is kept from
// the previous version, for what a person learned from the numbers.

export const RELIABILITY_DOC = path.join(REPO_ROOT, 'docs', 'reliability.md')

export function caseLine(r: CaseResult): string {
  return [r.name.padEnd(16), ...caseCounts(r)].join('  ')
}

/** A case's counts and verdict, as the one-line summaries show them. */
export function caseCounts(r: CaseResult): string[] {
  return [
    `${r.requests} requests`,
    `${r.ok2xx} 2xx`,
    `${r.client4xx} 4xx`,
    `${r.server5xx} 5xx`,
    `${r.errors} errors`,
    `${r.orders} orders`,
    `drift ${r.drift ?? 'n/a'}`,
    r.verdict,
  ]
}

/** `sweepBacklogDrainedMs` -> `sweep backlog drained (ms)`, for the report. */
const words = (key: string) =>
  key
    .replace(/Ms$/, ' (ms)')
    .replace(/[A-Z]/g, (c) => ` ${c.toLowerCase()}`)
    .replace('aof', 'AOF')

/** A markdown table: the first row is the header. */
export const table = (rows: string[][]) =>
  [rows[0]!, rows[0]!.map(() => '---'), ...rows.slice(1)].map((r) => `| ${r.join(' | ')} |`).join('\n')

export function writeReliabilityDoc(cases: FaultCase[], results: CaseResult[], startedAt: Date): string {
  const previous = existsSync(RELIABILITY_DOC) ? readFileSync(RELIABILITY_DOC, 'utf8') : ''
  const notes = /<!-- notes -->([\s\S]*?)<!-- \/notes -->/.exec(previous)?.[1] ?? '\n_No notes yet._\n'
  const byName = new Map(results.map((r) => [r.name, r]))
  const summary = table([
    ['case', 'requests', '2xx', '4xx', '5xx', 'errors', 'orders', 'drift', 'verdict', 'seed'],
    ...results.map((r) => [
      `[${r.name}](#${r.name})`,
      String(r.requests),
      String(r.ok2xx),
      String(r.client4xx),
      String(r.server5xx),
      String(r.errors),
      String(r.orders),
      String(r.drift ?? 'n/a'),
      r.verdict === 'pass' ? 'pass' : '**FAIL**',
      String(r.seed),
    ]),
  ])
  const sections = cases.map((fc) => {
    const r = byName.get(fc.name)
    if (!r) return `## ${fc.name}\n\n${fc.title}. _Not run in the last campaign._\n`
    const answers = Object.entries(r.answers)
      .sort(([, a], [, b]) => b - a)
      .map(([k, n]) => `${k}: ${n}`)
      .join(', ')
    const events = r.events.map((e) => `${(e.atMs / 1000).toFixed(1)} s ${e.what}`).join('; ')
    const checks = r.checks.map(
      (c) => `- ${c.ok ? 'ok' : '**FAIL**'} (${c.invariant}) ${c.name}: ${c.detail}`,
    )
    return [
      `## ${fc.name}`,
      '',
      `**${fc.title}.** ${fc.fault}`,
      '',
      `**Promise.** ${fc.promise}`,
      '',
      `**Limits.** ${fc.limits}`,
      '',
      `**Last run** (${r.strategy}, ${r.load.connections} connections, ${r.load.rate > 0 ? `${r.load.rate} requests/s` : 'unthrottled'}, ${r.load.durationSeconds} s; ` +
        `replay: \`npm run faults -- ${fc.name} --seed ${r.seed}\`): ${r.requests} requests, ${r.ok2xx} 2xx, ` +
        `${r.client4xx} 4xx, ${r.server5xx} 5xx, ${r.errors} errors, ${r.orders} orders, drift ${r.drift ?? 'n/a'}; ` +
        `latency p50 ${r.latencyMs.p50} ms, p99 ${r.latencyMs.p99} ms, max ${r.latencyMs.max} ms` +
        (r.failedLatency
          ? `; the 5xx answers took p50 ${r.failedLatency.p50} ms, p99 ${r.failedLatency.p99} ms`
          : '') +
        `. Verdict: **${r.verdict}**.`,
      '',
      `Faults: ${events || 'none'}.`,
      '',
      ...(Object.keys(r.notes).length
        ? [
            `Measured: ${Object.entries(r.notes)
              .map(([k, v]) => `${words(k)} ${v}`)
              .join(', ')}.`,
            '',
          ]
        : []),
      `Answers: ${answers}.`,
      '',
      ...checks,
      '',
    ].join('\n')
  })
  const settings = Object.entries(CAMPAIGN_APP_ENV)
    .map(([k, v]) => `\`${k}=${v}\``)
    .join(', ')
  const doc = `# Reliability: faults during a stampede

A flash sale is judged on its worst minute. \`npm run faults\` runs a campaign of faults, each during a
flash sale through nginx on a stack of its own (its own folder and ports, so the dev and test stacks are
untouched): it starts the load, injects the fault at a seeded random moment while units remain, heals
what it broke, lets the system go quiet, and then runs the invariant verifier (I1-I5, see
[load-testing.md](load-testing.md)) plus the checks of the case. Every case prints one line (case,
requests, 2xx, 4xx, 5xx, errors, orders, drift, verdict), and a full run rewrites this file.

\`\`\`sh
npm run faults                          # every case (about 9 minutes), rewrites this file
npm run faults -- redis-kill            # one case (or several names)
npm run faults -- redis-kill --seed 42  # replay a run: the same moments and the same victims
npm run faults -- --list                # the cases
\`\`\`

The buyers behave like careful clients: each sends an Idempotency-Key, and a buyer whose purchase got a
5xx sends the same key again on their next turn. Every case runs with ${settings} (tokens and
reservations expire within seconds, so the reconciler and the sweeper act during the run, not after
it), the load-test limits of \`npm run load\`, 2 API workers and the jobs process under PM2. A sale is
sized so that units remain for the whole run (each request buys at most one unit). The \`clocks\` case
needs Debian's \`faketime\` package (libfaketime), which CI installs.

Checks every case shares, besides the verifier: no answer is a 500 (an outage is a 502 or a 503 with a
reason); no request goes unanswered within the client's 15 s timeout (nginx gives up on a worker after 10 s and answers
itself); the last 2 s of the run answer 2xx with no
5xx (recovered); a buyer who retried after a 5xx with the same key got the order if it committed.

## The guarantees, and where they end

- **Postgres decides.** Every unit sold is a conditional UPDATE on the primary; nothing Redis loses,
  replays or believes can make Postgres sell a unit it does not have. Redis faults cost availability
  (503s) and, for a while, gate drift; never an oversell.
- **Redis AOF with \`appendfsync everysec\`** can lose up to about a second of writes when the machine
  crashes (a killed process loses almost nothing: its writes are already in the page cache). A gate
  restored from such a file can only be too generous, because the lost writes are admissions; the gate
  is therefore rebuilt from Postgres (re-fenced) after every Redis restart before it admits again.
- **Unknown outcomes are resolved, not guessed.** A COMMIT whose answer never came, or a Redis command
  that timed out, may have taken effect. The buyer gets 503; the gate token stays until its deadline,
  when the reconciler looks in Postgres; a retry with the same Idempotency-Key finds the order if it
  exists.
- **What is not promised:** that nobody sees an error during an outage (they see fast 503s and
  should retry), that the replica's catalogue is fresher than REPLICA_MAX_LAG_MS, or that a machine
  crash keeps the dev stack's Postgres intact (it runs with fsync off; production must not).

## Last run

${startedAt.toISOString().slice(0, 16).replace('T', ' ')} UTC on this repository's development machine (2 cores, shared).

${summary}

${sections.join('\n')}
## Notes

<!-- notes -->${notes}<!-- /notes -->
`
  writeFileSync(RELIABILITY_DOC, doc)
  return RELIABILITY_DOC
}
