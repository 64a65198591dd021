import { readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { REPO_ROOT } from '../../scripts/stack/paths.js'

// The module map of docs/architecture.md, enforced: folders under src/ import each other in one
// direction only, SQL lives in the repository that owns its table, domain code never imports a
// Fastify plugin, and the purchase wing (src/purchase/) sits on top: only the composition roots import
// it, and inside it the arrows go downward. Reads the source as text; needs no server.

const SRC = path.join(REPO_ROOT, 'src')

function sourceFiles(dir = SRC): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name)
    if (entry.isDirectory()) return sourceFiles(full)
    return entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts') ? [full] : []
  })
}

/**
 * A file's module: its folder under src/, or the file itself for the composition files at the root.
 * The purchase wing counts as three: purchase/ (the use case, its seam and the shared writer) and its
 * two paths, purchase/postgres and purchase/gate, so an arrow between them is an arrow between modules.
 */
function moduleOf(file: string): string {
  const parts = path.relative(SRC, file).split(path.sep)
  if (parts[0] === 'purchase' && parts.length > 2) return `purchase/${parts[1]}`
  return parts[0]!
}

/** The composition roots: the files at the root of src/ (app.ts, jobs.ts, server.ts, release-hooks.ts). */
const isCompositionRoot = (file: string) => path.dirname(file) === SRC
const inWing = (module: string) => module === 'purchase' || module.startsWith('purchase/')

function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8')
  return [...text.matchAll(/^(?:import|export)\b[^'"]*from '(\.[^']+)'/gm)].map((m) =>
    path.resolve(path.dirname(file), m[1]!.replace(/\.js$/, '.ts')),
  )
}

/** The first cycle in a directed graph, as a path that ends where it starts; null when there is none. */
export function findCycle(graph: Map<string, Set<string>>): string[] | null {
  const state = new Map<string, 'open' | 'done'>()
  const trail: string[] = []
  function visit(node: string): string[] | null {
    if (state.get(node) === 'done') return null
    if (state.get(node) === 'open') return [...trail.slice(trail.indexOf(node)), node]
    state.set(node, 'open')
    trail.push(node)
    for (const next of graph.get(node) ?? []) {
      const cycle = visit(next)
      if (cycle) return cycle
    }
    trail.pop()
    state.set(node, 'done')
    return null
  }
  for (const node of graph.keys()) {
    const cycle = visit(node)
    if (cycle) return cycle
  }
  return null
}

// Statements, not words: a comment that says "the sale row's UPDATE" is fine.
const SQL = /[`'"]\s*(SELECT\s|INSERT\s+INTO\s|UPDATE\s+\w+\s+SET\s|DELETE\s+FROM\s|WITH\s+\w+\s+AS\s*\()/
// src/db/ is the database's own infrastructure: the migration runner's table and the lag probes.
const mayHoldSql = (file: string) => file.endsWith('.repository.ts') || moduleOf(file) === 'db'
// Composition roots and Fastify adapters may import plugins; nothing else.
const mayImportPlugins = (file: string) =>
  /\.(plugin|routes)\.ts$/.test(file) || ['app.ts', 'server.ts'].includes(path.basename(file))

/** The files of `files` whose text matches `pattern`, relative to the repository. */
const filesMatching = (files: string[], pattern: RegExp) =>
  files
    .filter((file) => pattern.test(readFileSync(file, 'utf8')))
    .map((file) => path.relative(REPO_ROOT, file))

describe('module boundaries', () => {
  const files = sourceFiles()

  it('when the folders of src/ import each other, no cycle exists', () => {
    const graph = new Map<string, Set<string>>()
    for (const file of files) {
      const from = moduleOf(file)
      for (const target of importsOf(file)) {
        const to = moduleOf(target)
        if (to !== from) graph.set(from, (graph.get(from) ?? new Set()).add(to))
      }
    }
    expect(findCycle(graph)).toBeNull()
  })

  it('when a file holds an SQL statement, it is a repository (or the database infrastructure in src/db/)', () => {
    const offenders = files.filter((file) => !mayHoldSql(file) && SQL.test(readFileSync(file, 'utf8')))
    expect(offenders.map((file) => path.relative(REPO_ROOT, file))).toEqual([])
  })

  it('when a file imports a *.plugin.ts, it is a plugin, a route file or the app itself', () => {
    const offenders = files.filter(
      (file) => !mayImportPlugins(file) && importsOf(file).some((target) => target.endsWith('.plugin.ts')),
    )
    expect(offenders.map((file) => path.relative(REPO_ROOT, file))).toEqual([])
  })

  it('when a file outside the purchase wing imports from it, it is a composition root (app.ts, jobs.ts, ...)', () => {
    const offenders = files.filter(
      (file) =>
        !inWing(moduleOf(file)) &&
        !isCompositionRoot(file) &&
        importsOf(file).some((target) => inWing(moduleOf(target))),
    )
    expect(offenders.map((file) => path.relative(REPO_ROOT, file))).toEqual([])
  })

  it('when the purchase wing imports, it imports downward: the use case knows only the seam, and the two paths know neither each other, nor the use case, nor the edge and the waiting room in front of them', () => {
    const arrows = files.flatMap((file) =>
      importsOf(file).map((target) => ({ from: moduleOf(file), file, to: moduleOf(target), target })),
    )
    const offenders = arrows.filter(
      ({ from, to, target }) =>
        // The Postgres path and the gate path do not import each other.
        (from === 'purchase/postgres' && to === 'purchase/gate') ||
        (from === 'purchase/gate' && to === 'purchase/postgres') ||
        // The use case and its seam pick no path: src/app.ts does, once.
        (from === 'purchase' && to !== 'purchase' && inWing(to)) ||
        // A path uses the seam and the shared writer of sale orders, never the use case or its route.
        (from.startsWith('purchase/') && /purchase(\.routes)?\.ts$/.test(path.basename(target))) ||
        // The features in front of the purchase (the edge, the waiting room) and the two paths know nothing
        // of each other: the composition roots hand them what they need (a gate snapshot, a lease check).
        (['purchase/edge', 'purchase/queue'].includes(from) &&
          ['purchase/gate', 'purchase/postgres'].includes(to)) ||
        (['purchase/gate', 'purchase/postgres'].includes(from) &&
          ['purchase/edge', 'purchase/queue'].includes(to)),
    )
    expect(
      offenders.map(
        ({ file, target }) => `${path.relative(REPO_ROOT, file)} -> ${path.relative(REPO_ROOT, target)}`,
      ),
    ).toEqual([])
  })

  it('when code declares an order, a sale or a sale status, it is the one model (orders/order.ts, sales/sale.ts)', () => {
    expect(filesMatching(files, /^(export\s+)?(interface\s+Order\b|type\s+Order\s*=)/m)).toEqual([
      'src/orders/order.ts',
    ])
    expect(
      filesMatching(
        files,
        /^(export\s+)?(interface\s+(Sale|SaleView|SaleRow)\b|type\s+(Sale|SaleView|SaleRow)\s*=)/m,
      ),
    ).toEqual(['src/sales/sale.ts'])
    // The status unions are written once, in the schemas' enums: a union of their words elsewhere repeats them.
    // (A narrower union, like SaleNotActiveError's 'upcoming' | 'ended', is another type.)
    expect(filesMatching(files, /'active'\s*\|(?!\|)|(?<!\|)\|\s*'active'/)).toEqual([])
    expect(filesMatching(files, /'paid'\s*\|(?!\|)|(?<!\|)\|\s*'paid'/)).toEqual([])
  })

  it('when an order is made or read from its row, it is through the model (newReservedOrder, orderFromRow)', () => {
    // An order literal names its status and its paidAt together; only the model writes one.
    expect(filesMatching(files, /status: 'reserved',[\s\S]{0,200}paidAt: null/)).toEqual([
      'src/orders/order.ts',
    ])
  })

  it('when a module takes a logger, it takes Log (src/log.ts), not a logger type of its own', () => {
    expect(
      filesMatching(
        files,
        /\{\s*warn\(obj|^(export\s+)?(interface\s+\w*Log(ger)?\b|type\s+\w*Log(ger)?\s*=)/m,
      ),
    ).toEqual(['src/log.ts'])
  })

  it('when a response becomes an event stream, it is through src/http/sse.ts', () => {
    expect(filesMatching(files, /text\/event-stream/)).toEqual(['src/http/sse.ts'])
  })

  it('when the jobs process is built, it is in one function (buildJobs) and its entry holds no wiring', () => {
    const entry = readFileSync(path.join(SRC, 'jobs.ts'), 'utf8')
    expect(
      importsOf(path.join(SRC, 'jobs.ts'))
        .map((file) => path.relative(SRC, file))
        .sort(),
    ).toEqual(['config.ts', 'jobs-app.ts'])
    expect(entry).not.toMatch(/^(const|let) (?!jobs\b|stopping\b)/m)
    // The gate is created in one place for the API and the jobs process alike.
    expect(filesMatching(files, /(?<!function )createStockGate\(/)).toEqual(['src/purchase-wiring.ts'])
  })

  it('when a rule above matches nothing it should, it says so (its pattern can fail)', () => {
    const scratch = path.join(SRC, 'orders', 'order.ts')
    expect(filesMatching([scratch], /^(export\s+)?(interface\s+Order\b|type\s+Order\s*=)/m)).toEqual([
      'src/orders/order.ts',
    ])
    expect(
      filesMatching(
        [path.join(SRC, 'sales', 'sale.ts')],
        /^(export\s+)?(interface\s+Order\b|type\s+Order\s*=)/m,
      ),
    ).toEqual([])
  })

  it('when the cycle finder meets a cycle, it names it (the check above can fail)', () => {
    const graph = new Map([
      ['orders', new Set(['sales'])],
      ['sales', new Set(['stock', 'orders'])],
      ['stock', new Set<string>()],
    ])
    expect(findCycle(graph)).toEqual(['orders', 'sales', 'orders'])
    graph.get('sales')!.delete('orders')
    expect(findCycle(graph)).toBeNull()
  })
})
