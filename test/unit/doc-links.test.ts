import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { REPO_ROOT } from '../../scripts/stack/paths.js'

// Every relative link of README.md and docs/**/*.md points at something that exists: a file, a line
// of a source file (#L<n>, the way the teaching docs cite code), or a heading of another doc. A line
// anchor cannot say whether it still points at the right line, but it fails here once the file is
// shorter than the line it names. Reads the files as text; needs no server.

export interface DocLink {
  /** The Markdown file, relative to the repository. */
  doc: string
  line: number
  target: string
}

/** The Markdown files to check: README.md and everything under docs/. */
function markdownFiles(): string[] {
  const walk = (dir: string): string[] =>
    readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
      const full = path.join(dir, entry.name)
      if (entry.isDirectory()) return walk(full)
      return entry.name.endsWith('.md') ? [full] : []
    })
  return [path.join(REPO_ROOT, 'README.md'), ...walk(path.join(REPO_ROOT, 'docs'))]
}

/** Each line of a Markdown text with fenced code blocks blanked out, so their text is not read as Markdown. */
function proseLines(markdown: string): string[] {
  let fence: string | null = null
  return markdown.split('\n').map((line) => {
    const opening = /^\s*(`{3,}|~{3,})/.exec(line)?.[1]
    if (fence === null && opening) {
      fence = opening
      return ''
    }
    if (fence !== null) {
      if (line.trim().startsWith(fence)) fence = null
      return ''
    }
    return line
  })
}

/**
 * The links of a Markdown text that point inside the repository: not http(s) or mailto, and not a
 * bare #anchor into the same file. Links in code (fenced blocks, `inline spans`) are not links.
 */
export function relativeLinks(doc: string, markdown: string): DocLink[] {
  return proseLines(markdown).flatMap((text, index) =>
    [...text.replace(/`[^`]*`/g, '').matchAll(/!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)]
      .map((match) => match[1]!)
      .filter((target) => !/^(https?:|mailto:)/i.test(target) && !target.startsWith('#'))
      .map((target) => ({ doc, line: index + 1, target })),
  )
}

/** The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens. */
export function headingSlug(heading: string): string {
  return heading
    .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')
    .toLowerCase()
    .replace(/[^\p{L}\p{N} _-]/gu, '')
    .replace(/ /g, '-')
}

/** The anchors of a Markdown file's headings, with GitHub's -1, -2 ... for repeated ones. */
export function headingAnchors(markdown: string): Set<string> {
  const seen = new Map<string, number>()
  const anchors = new Set<string>()
  for (const line of proseLines(markdown)) {
    const heading = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line)?.[1]
    if (heading === undefined) continue
    const slug = headingSlug(heading)
    const count = seen.get(slug) ?? 0
    seen.set(slug, count + 1)
    anchors.add(count === 0 ? slug : `${slug}-${count}`)
  }
  return anchors
}

const lineCount = (file: string) => readFileSync(file, 'utf8').replace(/\n$/, '').split('\n').length

/** What is wrong with one link, or null when it holds. */
function problemOf(link: DocLink): string | null {
  const [pathPart, anchor] = link.target.split('#', 2) as [string, string | undefined]
  const file = path.resolve(REPO_ROOT, path.dirname(link.doc), decodeURIComponent(pathPart))
  if (!existsSync(file)) return 'no such file'
  if (anchor === undefined || anchor === '') return null
  const lines = /^L(\d+)(?:-L(\d+))?$/.exec(anchor)
  if (lines) {
    if (statSync(file).isDirectory()) return 'a line anchor on a folder'
    const wanted = Number(lines[2] ?? lines[1])
    const has = lineCount(file)
    return has >= wanted ? null : `line ${wanted} asked for, the file has ${has}`
  }
  if (!file.endsWith('.md')) return `anchor #${anchor} in a file that is not Markdown (use #L<line>)`
  return headingAnchors(readFileSync(file, 'utf8')).has(anchor) ? null : `no heading #${anchor}`
}

describe('documentation links', () => {
  const links = markdownFiles().flatMap((file) =>
    relativeLinks(path.relative(REPO_ROOT, file), readFileSync(file, 'utf8')),
  )
  const problems = (selected: DocLink[]) =>
    selected.flatMap((link) => {
      const problem = problemOf(link)
      return problem ? [`${link.doc}:${link.line} ${link.target}: ${problem}`] : []
    })

  it('when a link sits in code, is absolute, or is an anchor in the same file, then it is not checked', () => {
    const markdown = [
      '[a](a.md) `[b](b.md)` [c](https://example.com) [d](mailto:x@example.com) [e](#here)',
      '```ts',
      'const x = y[0](z)',
      '```',
      '![f](../img.svg "title") [g](../src/app.ts#L3)',
    ].join('\n')
    expect(relativeLinks('docs/x.md', markdown)).toEqual([
      { doc: 'docs/x.md', line: 1, target: 'a.md' },
      { doc: 'docs/x.md', line: 5, target: '../img.svg' },
      { doc: 'docs/x.md', line: 5, target: '../src/app.ts#L3' },
    ])
  })

  it('when a heading has punctuation, code or a repeat, then its anchor is the one GitHub makes', () => {
    const anchors = headingAnchors(
      "# Stock: never oversell (invariant I1)\n## Where Postgres' time goes\n## What `npm run load` does\n## Notes\n## Notes",
    )
    expect([...anchors]).toEqual([
      'stock-never-oversell-invariant-i1',
      'where-postgres-time-goes',
      'what-npm-run-load-does',
      'notes',
      'notes-1',
    ])
  })

  it('when the docs are read, then they hold relative links to check', () => {
    expect(links.length).toBeGreaterThan(0)
  })

  it('when a doc links to a file of the repository, then the file exists', () => {
    expect(problems(links.filter((link) => problemOf(link) === 'no such file'))).toEqual([])
  })

  it('when a link points at a line of a source file (#L<n>), then the file has at least n lines', () => {
    expect(problems(links.filter((link) => /#L\d+(-L\d+)?$/.test(link.target)))).toEqual([])
  })

  it('when a link to a line names a symbol in its title, then the symbol is on that line (or the two after it)', () => {
    const markdown = (file: string) => readFileSync(path.join(REPO_ROOT, file), 'utf8')
    const titled = markdownFiles().flatMap((file) => {
      const doc = path.relative(REPO_ROOT, file)
      return proseLines(markdown(doc)).flatMap((text, index) =>
        [...text.replace(/`[^`]*`/g, '').matchAll(/\]\(\s*([^)\s#]+)#L(\d+)\s+"([^"]+)"\s*\)/g)].map((m) => ({
          where: `${doc}:${index + 1}`,
          file: path.resolve(REPO_ROOT, path.dirname(doc), m[1]!),
          line: Number(m[2]),
          symbol: m[3]!,
        })),
      )
    })
    expect(titled.length).toBeGreaterThan(0)
    const misplaced = titled.filter(({ file, line, symbol }) => {
      const lines = existsSync(file) ? readFileSync(file, 'utf8').split('\n') : []
      return !lines
        .slice(line - 1, line + 2)
        .some((text) => new RegExp(`\\b${symbol.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\b`).test(text))
    })
    expect(misplaced.map(({ where, symbol }) => `${where} ${symbol}`)).toEqual([])
  })

  it('when a link points at a heading of another doc, then that heading exists', () => {
    expect(problems(links.filter((link) => /#(?!L\d)/.test(link.target)))).toEqual([])
  })
})
