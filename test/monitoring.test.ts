import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { REPO_ROOT } from '../scripts/stack/paths.js'
import { run } from '../scripts/stack/process.js'
import { renderTargets, writeAndCheckPrometheusConf } from '../scripts/stack/prometheus.js'
import { loadConfig } from '../src/config.js'
import { createMetrics } from '../src/metrics.js'

// The alert rules and the dashboard name metrics in strings that no compiler reads: a renamed metric
// would leave a panel empty and an alert silent without anyone noticing. These tests hold every name
// they use against the app's own registry (src/metrics.ts), and let promtool parse and run the rules.

const repoFile = (...parts: string[]) => path.join(REPO_ROOT, ...parts)
const PROMETHEUS_DIR = repoFile('deploy', 'prometheus')
const DASHBOARD = repoFile('deploy', 'grafana', 'dashboards', 'stampede.json')

interface AlertRule {
  alert: string
  expr: string
  for?: string
  labels?: Record<string, string>
  annotations?: Record<string, string>
}

interface Panel {
  id: number
  type: string
  title: string
  gridPos: { x: number; y: number; w: number; h: number }
  datasource?: { type: string; uid: string }
  targets?: { expr: string; datasource?: { uid: string } }[]
  panels?: Panel[]
}

interface Dashboard {
  uid: string
  schemaVersion: number
  panels: Panel[]
  templating: { list: { name: string; definition?: string }[] }
}

const alertRules = (
  parse(readFileSync(path.join(PROMETHEUS_DIR, 'alerts.yml'), 'utf8')) as { groups: { rules: AlertRule[] }[] }
).groups.flatMap((group) => group.rules)

const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as Dashboard
const panels = dashboard.panels.flatMap((panel) => [panel, ...(panel.panels ?? [])])
const queryPanels = panels.filter((panel) => panel.type !== 'row')
const dashboardExprs = queryPanels.flatMap((panel) => (panel.targets ?? []).map((target) => target.expr))
// Template variables query Prometheus too: label_values(<metric>, <label>).
const variableMetrics = dashboard.templating.list.flatMap(
  (variable) => /label_values\(\s*([a-zA-Z_:][\w:]*)\s*,/.exec(variable.definition ?? '')?.slice(1) ?? [],
)

const KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'and', 'or'])
for (const word of ['unless', 'bool', 'offset', 'inf', 'nan']) KEYWORDS.add(word)

/** The metric names a PromQL expression reads: what is left once strings, matchers and functions go. */
function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""')
    .replace(/\{[^}]*\}/g, ' ') // label matchers, with Grafana variables such as $route
    .replace(/\[[^\]]*\]/g, ' ') // ranges and subqueries: [5m], [$__rate_interval]
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ') // label lists
    .replace(/\$\w+/g, ' ')
  const names = new Set<string>()
  for (const match of bare.matchAll(/[a-zA-Z_:][\w:]*/g)) {
    const [word] = match
    const before = bare[match.index - 1] ?? ''
    const after = bare.slice(match.index + word.length)
    if (/[\d.]/.test(before)) continue // the unit of a number or duration: 5m, 1e3
    if (/^\s*\(/.test(after)) continue // a function or aggregation: rate(, sum(
    if (KEYWORDS.has(word.toLowerCase())) continue
    names.add(word)
  }
  return [...names]
}

// Series Prometheus makes itself, for every target and for the rules.
const PROMETHEUS_SERIES = [
  'up',
  'scrape_duration_seconds',
  'scrape_samples_scraped',
  'ALERTS',
  'ALERTS_FOR_STATE',
]

/** Every name a query may use: the app's metrics, with the _bucket/_count/_sum series of histograms. */
async function exportedNames(): Promise<Set<string>> {
  const { registry } = createMetrics('test')
  const names = new Set(PROMETHEUS_SERIES)
  for (const metric of await registry.getMetricsAsJSON()) {
    names.add(metric.name)
    const suffixes = { histogram: ['_bucket', '_count', '_sum'], summary: ['_count', '_sum'] }[
      String(metric.type)
    ]
    for (const suffix of suffixes ?? []) names.add(metric.name + suffix)
  }
  return names
}

const unknownNames = (exprs: string[], known: Set<string>) =>
  [...new Set(exprs.flatMap(metricNames))].filter((name) => !known.has(name)).sort()

const promtoolInstalled =
  (await run('sh', ['-c', 'command -v promtool'], { check: false }).catch(() => ({ code: 1 }))).code === 0

const tempDirs: string[] = []
const tempDir = () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'stampede-monitoring-'))
  tempDirs.push(dir)
  return dir
}

afterAll(() => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true })
})

describe('metric names in the alert rules and the dashboard', () => {
  it('when a query is read, its metric names are found and functions, labels and durations are not', () => {
    const expr = `histogram_quantile(0.99, sum by (le, route) (rate(http_request_duration_seconds_bucket{route!="/a:b", route=~"$route"}[$__rate_interval]))) > 0.5
      and on (route) sum without (worker) (increase(orders_total{status="paid"}[5m] offset 1m)) / ignoring (x) group_left up or vector(0)`
    expect(metricNames(expr).sort()).toEqual(['http_request_duration_seconds_bucket', 'orders_total', 'up'])
  })

  it('when the alert rules are checked, every metric they read is exported by the app', async () => {
    expect(
      unknownNames(
        alertRules.map((rule) => rule.expr),
        await exportedNames(),
      ),
    ).toEqual([])
  })

  it('when the dashboard is checked, every metric its panels and variables read is exported by the app', async () => {
    expect(dashboardExprs.length).toBeGreaterThan(20)
    expect(unknownNames([...dashboardExprs, ...variableMetrics], await exportedNames())).toEqual([])
  })
})

describe('the alert rules', () => {
  it('when listed, they cover oversell, drift, 5xx, latency, replica lag and down targets', () => {
    expect(alertRules.map((rule) => rule.alert)).toEqual(
      expect.arrayContaining([
        'OversellDetected',
        'StockDrift',
        'High5xxRatio',
        'HighP99Latency',
        'ReplicaLagHigh',
        'InstanceDown',
      ]),
    )
  })

  it('when read by a person, each says how bad it is and what happened', () => {
    for (const rule of alertRules) {
      expect(['critical', 'warning'], rule.alert).toContain(rule.labels?.severity)
      expect(rule.annotations?.summary, rule.alert).toBeTruthy()
      expect(rule.annotations?.description, rule.alert).toBeTruthy()
    }
  })

  it.runIf(promtoolInstalled)('when promtool checks alerts.yml, it accepts every rule', async () => {
    const result = await run('promtool', ['check', 'rules', path.join(PROMETHEUS_DIR, 'alerts.yml')], {
      check: false,
    })
    expect(result.code, result.stdout + result.stderr).toBe(0)
  })

  it.runIf(promtoolInstalled)(
    'when promtool runs alerts.test.yml, each alert fires exactly when its series say so',
    async () => {
      const result = await run('promtool', ['test', 'rules', path.join(PROMETHEUS_DIR, 'alerts.test.yml')], {
        check: false,
      })
      expect(result.code, result.stdout + result.stderr).toBe(0)
    },
  )
})

describe('the Prometheus configuration', () => {
  it('when used by docker compose, its targets are the app container’s metrics ports', () => {
    const compose = parse(readFileSync(repoFile('docker-compose.yml'), 'utf8')) as {
      services: { app: { environment: Record<string, string> } }
    }
    const { METRICS_PORT, API_INSTANCES, JOBS_METRICS_PORT } = compose.services.app.environment
    const config = loadConfig({ METRICS_PORT, API_INSTANCES, JOBS_METRICS_PORT })
    const targets = (job: string) =>
      (
        parse(readFileSync(path.join(PROMETHEUS_DIR, 'targets', `${job}.yml`), 'utf8')) as {
          targets: string[]
        }[]
      ).flatMap((group) => group.targets)
    expect(targets('api')).toEqual(
      Array.from({ length: config.API_INSTANCES }, (_, n) => `app:${config.METRICS_PORT + n}`),
    )
    expect(targets('jobs')).toEqual([`app:${config.JOBS_METRICS_PORT}`])
  })

  it('when rendered for a local stack, the target files list its workers and jobs process', () => {
    const files = renderTargets({
      apiTargets: ['127.0.0.1:29200', '127.0.0.1:29201'],
      jobsTarget: '127.0.0.1:29299',
    })
    expect(parse(files['api.yml']!)).toEqual([{ targets: ['127.0.0.1:29200', '127.0.0.1:29201'] }])
    expect(parse(files['jobs.yml']!)).toEqual([{ targets: ['127.0.0.1:29299'] }])
  })

  it.runIf(promtoolInstalled)(
    'when rendered into a stack folder, promtool check config accepts it with its rules',
    async () => {
      const dir = tempDir()
      await writeAndCheckPrometheusConf({
        dir,
        port: 29090,
        apiTargets: ['127.0.0.1:29100', '127.0.0.1:29101'],
        jobsTarget: '127.0.0.1:29199',
      })
      const result = await run('promtool', ['check', 'config', path.join(dir, 'prometheus.yml')], {
        check: false,
      })
      expect(result.stdout + result.stderr).toMatch(/SUCCESS: \d+ rules found/)
    },
  )
})

describe('the Grafana dashboard', () => {
  const provisioned = parse(
    readFileSync(repoFile('deploy', 'grafana', 'provisioning', 'datasources', 'prometheus.yml'), 'utf8'),
  ) as { datasources: { uid: string; type: string }[] }
  const datasourceUid = provisioned.datasources.find((d) => d.type === 'prometheus')?.uid

  it('when loaded, every panel and query uses the provisioned Prometheus datasource', () => {
    expect(datasourceUid).toBeTruthy()
    for (const panel of queryPanels) {
      expect(panel.datasource?.uid, panel.title).toBe(datasourceUid)
      expect(panel.targets?.length, panel.title).toBeGreaterThan(0)
      for (const target of panel.targets ?? [])
        expect(target.datasource?.uid, panel.title).toBe(datasourceUid)
    }
  })

  it('when laid out, panel ids are unique and no two panels overlap on the 24-column grid', () => {
    expect(new Set(panels.map((p) => p.id)).size).toBe(panels.length)
    const cells = new Map<string, string>()
    for (const { title, gridPos: g } of panels) {
      expect(g.x + g.w, title).toBeLessThanOrEqual(24)
      for (let x = g.x; x < g.x + g.w; x++)
        for (let y = g.y; y < g.y + g.h; y++) {
          expect(cells.get(`${x},${y}`), `${title} overlaps`).toBeUndefined()
          cells.set(`${x},${y}`, title)
        }
    }
  })

  it('when searched for the flash-sale panels, it has each one the brief asks for', () => {
    const titles = queryPanels.map((p) => p.title.toLowerCase()).join('\n')
    for (const words of ['sale progress', 'purchase outcomes', 'latency', 'cache hit ratio', 'conflicts']) {
      expect(titles).toContain(words)
    }
    for (const words of [
      'retries',
      'replica lag',
      'pool',
      'batch size',
      'oversell',
      'drift',
      '5xx',
      'targets up',
    ]) {
      expect(titles).toContain(words)
    }
  })

  it.runIf(promtoolInstalled)('when promtool parses every panel query, none is invalid PromQL', async () => {
    // Grafana's variables become what Grafana would put there, and each query a recording rule.
    const rules = dashboardExprs.map((expr, n) => ({
      record: `dashboard:query_${n}`,
      expr: expr
        .replaceAll('$__rate_interval', '20s')
        .replaceAll('$__range', '30m')
        .replaceAll('$route', '.*'),
    }))
    const file = path.join(tempDir(), 'dashboard-queries.yml')
    writeFileSync(file, JSON.stringify({ groups: [{ name: 'dashboard', rules }] }))
    const result = await run('promtool', ['check', 'rules', file], { check: false })
    expect(result.code, result.stdout + result.stderr).toBe(0)
  })
})
