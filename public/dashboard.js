// The live dashboard: one server-sent stream (/api/dashboard/stream) delivers a sample of the whole
// cluster once a second, first the last five minutes of them (`history`), then each new one (`sample`).
/* global document, window, EventSource, Option, setTimeout, clearTimeout */
// The charts are inline SVG drawn here; the numbers come computed from the server (docs/monitoring.md).

const STREAM_URL = '/api/dashboard/stream'
const WINDOW_MS = 5 * 60 * 1000
// A stream that has said nothing for this long is treated as lost, even if the connection looks open.
const SILENCE_MS = 5000
const RETRY_MS = 3000
const SVG = 'http://www.w3.org/2000/svg'

const $ = (id) => document.getElementById(id)
let samples = []
let source = null
let retryTimer = null
let silenceTimer = null

// ---- the stream ----

function connect() {
  clearTimeout(retryTimer)
  source?.close()
  source = new EventSource(STREAM_URL)
  source.addEventListener('history', (event) => {
    samples = JSON.parse(event.data)
    delivered()
  })
  source.addEventListener('sample', (event) => {
    samples.push(JSON.parse(event.data))
    const oldest = Date.now() - WINDOW_MS - 10_000
    while (samples.length > 0 && samples[0].at < oldest) samples.shift()
    delivered()
  })
  source.addEventListener('error', () => {
    setStatus('reconnecting')
    // The browser retries a dropped stream by itself; a refused one (503, 429) it gives up on.
    if (source.readyState === EventSource.CLOSED) retryTimer = setTimeout(connect, RETRY_MS)
  })
}

function delivered() {
  setStatus('live')
  clearTimeout(silenceTimer)
  silenceTimer = setTimeout(() => {
    setStatus('reconnecting')
    connect()
  }, SILENCE_MS)
  render()
}

function setStatus(status) {
  const element = $('stream-status')
  if (element.textContent !== status) element.textContent = status
  element.classList.toggle('live', status === 'live')
}

function disconnect() {
  clearTimeout(retryTimer)
  clearTimeout(silenceTimer)
  source?.close()
  source = null
  setStatus('reconnecting')
}

// A page in the back/forward cache must not hold a connection; it opens a new stream when shown again.
window.addEventListener('pagehide', disconnect)
window.addEventListener('pageshow', (event) => {
  if (event.persisted) connect()
})

// ---- formatting ----

const integer = new Intl.NumberFormat('en', { maximumFractionDigits: 0, useGrouping: false })
const decimal = new Intl.NumberFormat('en', { maximumFractionDigits: 1, useGrouping: false })
const show = (value, format = decimal) => (value === null || value === undefined ? '–' : format.format(value))

function setOutput(id, text) {
  const element = $(id)
  if (element.value !== text) element.value = text
}

// ---- what is shown ----

function render() {
  const latest = samples.at(-1)
  if (!latest) return
  renderSale(latest)

  setOutput('answers-per-second', show(latest.answers.perSecond))
  setOutput('answers-total', show(latest.answers.total, integer))
  const outcomes = outcomeNames()
  drawPanel(
    'answers',
    'answers per second',
    outcomes.map((name) => ({
      name,
      value: (s) => s.answers.byOutcome[name] ?? 0,
    })),
    { unit: '/s' },
  )

  setOutput('p50-ms', show(latest.latency.p50Ms))
  setOutput('p99-ms', show(latest.latency.p99Ms))
  drawPanel(
    'latency',
    'latency',
    [
      { name: 'p50', value: (s) => s.latency.p50Ms },
      { name: 'p99', value: (s) => s.latency.p99Ms },
    ],
    { unit: 'ms' },
  )

  renderStock(latest)

  setOutput('batch-size', show(latest.batches.meanSize))
  setOutput('batches-per-second', show(latest.batches.perSecond))
  drawPanel('batch', 'orders per batch', [{ name: 'orders per batch', value: (s) => s.batches.meanSize }], {
    legend: false,
  })

  const percent = (ratio) => (ratio === null ? null : ratio * 100)
  setOutput('cache-hit-ratio', show(percent(latest.cache.hitRatio)))
  setOutput('cache-lookups', show(latest.cache.lookupsPerSecond))
  drawPanel('cache', 'cache hit ratio', [{ name: 'hit ratio', value: (s) => percent(s.cache.hitRatio) }], {
    unit: '%',
    max: 100,
    legend: false,
  })

  setOutput('replica-lag-ms', show(latest.replicaLagMs, integer))
  drawPanel('replica', 'replica lag', [{ name: 'replica lag', value: (s) => s.replicaLagMs }], {
    unit: 'ms',
    legend: false,
  })
}

/** Every outcome seen in the window, 2xx first, 5xx last, the 4xx codes between. */
function outcomeNames() {
  const names = new Set()
  for (const sample of samples) for (const name of Object.keys(sample.answers.byOutcome)) names.add(name)
  const rank = (name) => (name === '2xx' ? 0 : name === '5xx' ? 2 : 1)
  return [...names].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b))
}

// ---- sale progress ----

function renderSale(latest) {
  const select = $('sale')
  const ids = latest.sales.map((sale) => String(sale.saleId))
  const shown = [...select.options].slice(1).map((option) => option.value)
  if (ids.join() !== shown.join()) {
    const chosen = select.value
    select.replaceChildren(new Option('Busiest sale', ''))
    for (const sale of latest.sales)
      select.add(new Option(`#${sale.saleId} ${sale.productName}`, String(sale.saleId)))
    select.value = ids.includes(chosen) ? chosen : ''
  }
  const saleId = select.value ? Number(select.value) : busiestSale(latest)
  const sale = latest.sales.find((s) => s.saleId === saleId)
  if (!sale) {
    setOutput('sold-units', '–')
    setOutput('left-units', '–')
    setOutput('sale-status', 'no sale')
    drawPanel('sale', 'sale progress', [], {})
    return
  }
  setOutput('sold-units', show(sale.taken, integer))
  setOutput('left-units', show(sale.remaining, integer))
  setOutput('sale-status', `${sale.status.replace('_', ' ')} (#${sale.saleId} ${sale.productName})`)
  const of = (s) => s.sales.find((x) => x.saleId === saleId)
  drawPanel(
    'sale',
    `sale #${sale.saleId} ${sale.productName}`,
    [
      { name: 'left', value: (s) => of(s)?.remaining ?? null },
      { name: 'sold', value: (s) => of(s)?.taken ?? null },
    ],
    { unit: 'units', max: sale.unitsTotal },
  )
}

/** The sale whose sold units moved last (the one being bought now); else the first one on sale. */
function busiestSale(latest) {
  let best = null
  let bestAt = -1
  for (const sale of latest.sales) {
    const takenAt = (sample) => sample.sales.find((s) => s.saleId === sale.saleId)?.taken
    for (let n = samples.length - 1; n > 0 && samples[n].at > bestAt; n--) {
      const now = takenAt(samples[n])
      const before = takenAt(samples[n - 1])
      if (now === undefined || before === undefined) break
      if (now !== before) {
        best = sale.saleId
        bestAt = samples[n].at
        break
      }
    }
  }
  return best ?? latest.sales.find((s) => s.status === 'active')?.saleId ?? latest.sales[0]?.saleId
}

// ---- conflicts and retries ----

function renderStock(latest) {
  const strategies = new Set()
  for (const sample of samples) for (const name of Object.keys(sample.stock)) strategies.add(name)
  const names = [...strategies].sort()
  const body = $('stock-rows')
  if (names.length === 0) {
    if (body.dataset.empty !== 'true') {
      const cell = Object.assign(document.createElement('td'), { colSpan: 3, className: 'muted' })
      cell.textContent = 'No conflicts yet.'
      const row = document.createElement('tr')
      row.append(cell)
      body.replaceChildren(row)
      body.dataset.empty = 'true'
    }
  } else {
    body.dataset.empty = 'false'
    body.replaceChildren(
      ...names.map((name) => {
        const row = document.createElement('tr')
        const now = latest.stock[name] ?? { conflictsPerSecond: 0, retriesPerSecond: 0 }
        const th = Object.assign(document.createElement('th'), { scope: 'row', textContent: name })
        row.append(
          th,
          Object.assign(document.createElement('td'), { textContent: show(now.conflictsPerSecond) }),
          Object.assign(document.createElement('td'), { textContent: show(now.retriesPerSecond) }),
        )
        return row
      }),
    )
  }
  drawPanel(
    'stock',
    'conflicts and retries',
    names.flatMap((name) => [
      { name: `${name} conflicts`, value: (s) => s.stock[name]?.conflictsPerSecond ?? 0 },
      { name: `${name} retries`, value: (s) => s.stock[name]?.retriesPerSecond ?? 0 },
    ]),
    { unit: '/s' },
  )
}

// ---- charts ----

/**
 * Draws one panel's chart (#<id>-chart) and legend (#<id>-legend): a line per series over the last
 * five minutes, and says the same in words in the chart's <desc> for screen readers.
 */
function drawPanel(id, what, series, { unit = '', max, legend = true }) {
  const svg = $(`${id}-chart`)
  const width = Math.max(240, Math.round(svg.getBoundingClientRect().width) || 600)
  const height = 160
  const pad = { left: 44, right: 8, top: 10, bottom: 22 }
  // The last five minutes, or since the first sample (at least a minute), so a short run fills the width.
  const end = samples.at(-1)?.at ?? Date.now()
  const span = Math.min(WINDOW_MS, Math.max(60_000, end - (samples[0]?.at ?? end)))
  const start = end - span
  const shown = samples.filter((s) => s.at >= start)
  const lines = series.map((line, n) => ({
    ...line,
    n,
    points: shown.map((s) => [s.at, line.value(s)]),
  }))
  const highest = Math.max(0, ...lines.flatMap((line) => line.points.map(([, v]) => v ?? 0)))
  const top = max !== undefined && highest <= max ? max : niceCeiling(highest)
  const x = (t) => pad.left + ((t - start) / span) * (width - pad.left - pad.right)
  const y = (v) => height - pad.bottom - (v / top) * (height - pad.top - pad.bottom)

  svg.setAttribute('viewBox', `0 0 ${width} ${height}`)
  svg.setAttribute('height', String(height))
  const title = svg.querySelector('title')
  const desc = svg.querySelector('desc')
  const parts = [title, desc]
  for (const v of [0, top / 2, top]) {
    parts.push(node('line', { class: 'grid', x1: pad.left, x2: width - pad.right, y1: y(v), y2: y(v) }))
    parts.push(
      node('text', { class: 'axis', x: pad.left - 4, y: y(v) + 4, 'text-anchor': 'end' }, decimal.format(v)),
    )
  }
  parts.push(
    node('text', { class: 'axis', x: pad.left, y: height - 6 }, `${Math.round(span / 60_000)} min ago`),
  )
  parts.push(
    node('text', { class: 'axis', x: width - pad.right, y: height - 6, 'text-anchor': 'end' }, 'now'),
  )
  for (const line of lines) {
    const cls = `series-${line.n % 8}`
    for (const run of runsOf(line.points)) {
      // A value measured once between gaps (one batch in a quiet minute) is a dot, not an invisible line.
      if (run.length === 1) {
        parts.push(node('circle', { class: `dot ${cls}`, cx: x(run[0][0]), cy: y(run[0][1]), r: 3 }))
      } else {
        const d = run
          .map(([t, v], n) => `${n === 0 ? 'M' : 'L'}${x(t).toFixed(1)},${y(v).toFixed(1)}`)
          .join('')
        parts.push(node('path', { class: `line ${cls}`, d }))
      }
    }
  }
  svg.replaceChildren(...parts)

  const latest = lines.map(
    (line) => `${line.name} ${show(line.points.at(-1)?.[1] ?? null)}${unit && ` ${unit}`}`,
  )
  desc.textContent =
    lines.length === 0 || shown.length === 0
      ? 'No data yet.'
      : `Chart of ${what} over the last ${Math.round((end - shown[0].at) / 60_000) || 1} minute(s); now: ${latest.join(', ')}.`

  if (legend) {
    const list = $(`${id}-legend`)
    const names = lines.map((line) => `${line.n}:${line.name}`).join('|')
    if (list.dataset.names !== names) {
      list.dataset.names = names
      list.replaceChildren(
        ...lines.map((line) => {
          const item = document.createElement('li')
          const swatch = Object.assign(document.createElement('span'), {
            className: `swatch series-${line.n % 8}`,
          })
          swatch.setAttribute('aria-hidden', 'true')
          item.append(swatch, line.name)
          return item
        }),
      )
    }
  }
}

/** The runs of measured points; a null value (nothing measured) ends a run. */
function runsOf(points) {
  const runs = [[]]
  for (const [t, v] of points) {
    if (v === null || v === undefined) {
      if (runs.at(-1).length > 0) runs.push([])
    } else {
      runs.at(-1).push([t, v])
    }
  }
  return runs.filter((run) => run.length > 0)
}

/** 1, 2, 5, 10, 20, 50, ... : the smallest such number at or above `value` (at least 1). */
function niceCeiling(value) {
  if (value <= 1) return 1
  const power = 10 ** Math.floor(Math.log10(value))
  for (const step of [1, 2, 5, 10]) if (step * power >= value) return step * power
  return 10 * power
}

function node(name, attributes, text) {
  const element = document.createElementNS(SVG, name)
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value))
  if (text !== undefined) element.textContent = text
  return element
}

let resizeTimer = null
window.addEventListener('resize', () => {
  clearTimeout(resizeTimer)
  resizeTimer = setTimeout(render, 150)
})
$('sale').addEventListener('change', render)
connect()
