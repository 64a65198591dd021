import type { ScenarioRun } from './scenario.js'

// A self-contained HTML report: no script, no external file; charts are inline SVG drawn here.

const esc = (text: unknown) =>
  String(text).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!)
const fmt = (n: number, digits = 0) =>
  n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })

interface Series {
  label: string
  color: string
  points: [number, number][]
}

/** A "nice" axis maximum and step: 1, 2 or 5 times a power of ten. */
function niceScale(max: number, ticks = 5): { top: number; step: number } {
  if (max <= 0) return { top: 1, step: 0.2 }
  const raw = max / ticks
  const power = 10 ** Math.floor(Math.log10(raw))
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw)!
  return { top: Math.ceil(max / step) * step, step }
}

const W = 640
const H = 240
const PAD = { left: 64, right: 16, top: 28, bottom: 40 }

function frame(title: string, xLabel: string, yLabel: string, body: string, legend: Series[] = []) {
  const legendSvg = legend
    .map(
      (s, i) =>
        `<rect x="${PAD.left + 8 + i * 130}" y="8" width="12" height="12" fill="${s.color}"/>` +
        `<text x="${PAD.left + 24 + i * 130}" y="18" font-size="12">${esc(s.label)}</text>`,
    )
    .join('')
  return `<figure><figcaption>${esc(title)}</figcaption>
<svg viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(title)}" font-family="system-ui, sans-serif">
${body}${legendSvg}
<text x="${(PAD.left + W - PAD.right) / 2}" y="${H - 6}" font-size="12" text-anchor="middle">${esc(xLabel)}</text>
<text x="14" y="${(PAD.top + H - PAD.bottom) / 2}" font-size="12" text-anchor="middle" transform="rotate(-90 14 ${(PAD.top + H - PAD.bottom) / 2})">${esc(yLabel)}</text>
</svg></figure>`
}

function yAxis(top: number, step: number, scaleY: (v: number) => number) {
  let svg = ''
  for (let v = 0; v <= top + step / 2; v += step) {
    const y = scaleY(v)
    svg += `<line x1="${PAD.left}" x2="${W - PAD.right}" y1="${y}" y2="${y}" stroke="#e5e7eb"/>`
    svg += `<text x="${PAD.left - 6}" y="${y + 4}" font-size="11" text-anchor="end">${fmt(v, step < 1 ? 1 : 0)}</text>`
  }
  return svg
}

export function lineChart(title: string, xLabel: string, yLabel: string, series: Series[]): string {
  const all = series.flatMap((s) => s.points)
  if (all.length === 0) return ''
  const x = niceScale(Math.max(...all.map((p) => p[0])), 8)
  const y = niceScale(Math.max(...all.map((p) => p[1])))
  const scaleX = (v: number) => PAD.left + (v / x.top) * (W - PAD.left - PAD.right)
  const scaleY = (v: number) => H - PAD.bottom - (v / y.top) * (H - PAD.top - PAD.bottom)
  let body = yAxis(y.top, y.step, scaleY)
  for (let v = 0; v <= x.top + x.step / 2; v += x.step) {
    body += `<text x="${scaleX(v)}" y="${H - PAD.bottom + 16}" font-size="11" text-anchor="middle">${fmt(v, x.step < 1 ? 1 : 0)}</text>`
  }
  for (const s of series) {
    const points = s.points.map(([px, py]) => `${scaleX(px).toFixed(1)},${scaleY(py).toFixed(1)}`).join(' ')
    body += `<polyline fill="none" stroke="${s.color}" stroke-width="2" points="${points}"/>`
  }
  return frame(title, xLabel, yLabel, body, series)
}

export function barChart(
  title: string,
  xLabel: string,
  yLabel: string,
  bars: { label: string; value: number }[],
) {
  if (bars.length === 0) return ''
  const y = niceScale(Math.max(...bars.map((b) => b.value)))
  const scaleY = (v: number) => H - PAD.bottom - (v / y.top) * (H - PAD.top - PAD.bottom)
  const slot = (W - PAD.left - PAD.right) / bars.length
  let body = yAxis(y.top, y.step, scaleY)
  bars.forEach((bar, i) => {
    const x = PAD.left + i * slot
    const top = scaleY(bar.value)
    body += `<rect x="${(x + 2).toFixed(1)}" y="${top.toFixed(1)}" width="${(slot - 4).toFixed(1)}" height="${(H - PAD.bottom - top).toFixed(1)}" fill="#6366f1"><title>${esc(bar.label)} ms: ${fmt(bar.value)}</title></rect>`
    body += `<text x="${(x + slot / 2).toFixed(1)}" y="${H - PAD.bottom + 14}" font-size="10" text-anchor="middle">${esc(bar.label)}</text>`
  })
  return frame(title, xLabel, yLabel, body)
}

function runSection(run: ScenarioRun): string {
  const { load, sale, metrics, verification } = run
  const rows: [string, string][] = [
    ['strategy', run.strategy],
    [
      'parameters',
      Object.entries(run.params)
        .map(([k, v]) => `${k}=${v}`)
        .join(' '),
    ],
    [
      'throughput',
      `${fmt(load.requestsPerSecond)} answers/s (${fmt(load.answered)} in ${fmt(load.durationSeconds, 1)} s)`,
    ],
    [
      'latency ms',
      `p50 ${fmt(load.latencyMs.p50, 1)} · p90 ${fmt(load.latencyMs.p90, 1)} · p99 ${fmt(load.latencyMs.p99, 1)} · max ${fmt(load.latencyMs.max, 1)}`,
    ],
    [
      'not answered',
      `${load.errors} connection errors (${load.timeouts} timeouts), ${load.unanswered} cut off at the end`,
    ],
  ]
  if (sale) {
    rows.push([
      'sale',
      `${sale.taken}/${sale.units} taken · first SOLD_OUT ${sale.firstSoldOutMs === null ? 'n/a' : `${fmt(sale.firstSoldOutMs)} ms`}` +
        ` · last order ${sale.lastOrderMs === null ? 'n/a' : `${fmt(sale.lastOrderMs)} ms`}` +
        ` · ${sale.durableUnitsPerSecond === null ? 'n/a' : fmt(sale.durableUnitsPerSecond)} durable units/s`,
    ])
    rows.push(['orders', `${sale.created} created · ${sale.replayed} replayed (same key, same order)`])
  }
  rows.push([
    'stock path',
    metrics
      ? `${fmt(metrics.stockConflicts)} conflicts · ${fmt(metrics.stockRetries)} retries · ${fmt(metrics.batchesCommitted)} batches (${fmt(metrics.batchesCommitted ? metrics.batchedOrders / metrics.batchesCommitted : 0, 1)} orders each)`
      : 'n/a',
  ])
  rows.push([
    'cache',
    metrics
      ? metrics.cache
          .map(
            (c) =>
              `${c.layer}: ${c.hitRatio === null ? 'n/a' : `${fmt(c.hitRatio * 100, 1)}%`} of ${fmt(c.lookups)}`,
          )
          .join(' · ') || 'no lookups'
      : 'n/a',
  ])
  const answers = Object.entries(load.answers)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, n]) => `<tr><td>${esc(k)}</td><td class="n">${fmt(n)}</td></tr>`)
    .join('')
  const checks = verification.checks
    .map(
      (c) =>
        `<li class="${c.ok ? 'ok' : 'fail'}"><b>${c.ok ? 'ok' : 'FAIL'}</b> ${esc(c.invariant)} ${esc(c.name)}: ${esc(c.detail)}</li>`,
    )
    .join('')
  const throughput = lineChart('Answers per second', 'seconds', 'answers/s', [
    { label: '2xx', color: '#16a34a', points: load.timeline.map((s) => [s.t, s.ok]) },
    { label: 'other', color: '#f59e0b', points: load.timeline.map((s) => [s.t, s.other]) },
  ])
  const latency = barChart(
    'Latency distribution (all answers)',
    'at most ms',
    'answers',
    load.latencyHistogram
      .filter(
        (b, i, all) =>
          b.count > 0 || (i > 0 && all[i - 1]!.count > 0 && all.slice(i).some((l) => l.count > 0)),
      )
      .map((b) => ({
        label: b.upToMs === Infinity || b.upToMs === null ? '>5000' : String(b.upToMs),
        value: b.count,
      })),
  )
  const stock = lineChart('Units on offer (GET /api/sales/:id every 200 ms)', 'seconds', 'units', [
    { label: 'remaining', color: '#dc2626', points: run.stock.map((p) => [p.t, p.remaining]) },
  ])
  return `<section>
<h2>${esc(run.scenario)} <span class="${verification.ok ? 'ok' : 'fail'}">${verification.ok ? 'invariants passed' : 'INVARIANTS FAILED'}</span></h2>
<p class="muted">${esc(run.startedAt)}</p>
<table>${rows.map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(v)}</td></tr>`).join('')}</table>
<div class="charts">${throughput}${latency}${stock}</div>
<h3>Answers</h3><table class="answers">${answers}</table>
<h3>Invariants</h3><ul class="checks">${checks}</ul>
</section>`
}

export function renderHtml(title: string, runs: ScenarioRun[]): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Stampede load report: ${esc(title)}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem; color: #111827; max-width: 1400px; }
table { border-collapse: collapse; margin: .5rem 0; }
th, td { text-align: left; padding: .2rem .8rem .2rem 0; vertical-align: top; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.answers td { border-bottom: 1px solid #f3f4f6; }
.charts { display: flex; flex-wrap: wrap; gap: 1rem; }
figure { margin: 0; } figcaption { font-weight: 600; font-size: .9rem; }
.ok { color: #15803d; } .fail { color: #b91c1c; font-weight: 700; }
.checks { list-style: none; padding-left: 0; } .muted { color: #6b7280; }
section { border-top: 1px solid #e5e7eb; padding-top: 1rem; margin-top: 1.5rem; }
</style></head><body>
<h1>Stampede load report: ${esc(title)}</h1>
${runs.map(runSection).join('\n')}
</body></html>
`
}
