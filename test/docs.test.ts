/**
 * The project's documentation stands alone: nothing in src/, test/ or the README points outside the
 * repository (the old notes file and the shared folder beside it are not in a clone), and every `docs/<file>#anchor`
 * cited in a comment, and every link inside docs/, leads to a heading that exists (GitHub-style slugs).
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { describe, expect, it } from 'vitest'

const ROOT = resolve(import.meta.dirname, '..')

/** Every file under `dir` (relative to the repository root), recursively. */
function filesUnder (dir: string): string[] {
  const out: string[] = []
  for (const name of readdirSync(join(ROOT, dir))) {
    const path = join(dir, name)
    if (statSync(join(ROOT, path)).isDirectory()) out.push(...filesUnder(path))
    else out.push(path)
  }
  return out
}

const read = (path: string) => readFileSync(join(ROOT, path), 'utf8')

/** GitHub's heading anchor: lower case, punctuation dropped (but `-` and `_`), spaces become `-`. */
export function githubSlug (heading: string): string {
  return heading.trim().toLowerCase().replace(/[^\p{L}\p{N}\p{M}\p{Pc} -]/gu, '').replace(/ /g, '-')
}

/** The anchors a markdown file offers: its headings' slugs (numbered like GitHub's when repeated) and `<a id>`s. */
export function anchorsOf (markdown: string): Set<string> {
  const anchors = new Set<string>()
  const seen = new Map<string, number>()
  let fenced = false
  for (const line of markdown.split('\n')) {
    if (/^\s*```/.test(line)) fenced = !fenced
    if (fenced) continue
    const heading = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line)
    if (heading) {
      const base = githubSlug(heading[1] as string)
      const n = seen.get(base) ?? 0
      seen.set(base, n + 1)
      anchors.add(n === 0 ? base : `${base}-${n}`)
    }
    for (const m of line.matchAll(/<a\s+(?:id|name)="([^"]+)"/g)) anchors.add(m[1] as string)
  }
  return anchors
}

// Built from pieces so that this file does not trip its own check.
const FORBIDDEN = [['runtime', 'notes'].join('-'), ['..', 'shared'].join('/')]
const SCANNED = [...filesUnder('src'), ...filesUnder('test'), 'README.md']
const DOCS = existsSync(join(ROOT, 'docs')) ? filesUnder('docs').filter(f => f.endsWith('.md')) : []

/** `docs/<file>.md#anchor` citations, not preceded by anything that would make them part of a URL or another path. */
const CITATION = /(?<![\w./-])docs\/([\w./-]+\.md)#([\w-]+)/g

describe('documentation stands alone', () => {
  it('docs/ exists and holds the Runtime API page', () => {
    expect(DOCS).toContain(join('docs', 'runtime-api.md'))
  })

  it.each(FORBIDDEN)('no file in src/, test/ or README.md mentions %s', (word) => {
    const offenders = SCANNED.filter(f => read(f).includes(word))
    expect(offenders).toEqual([])
  })

  it('every docs/<file>#anchor cited in src/, test/ or README.md is a heading of that file', () => {
    const cited: string[] = []
    const broken: string[] = []
    for (const file of SCANNED) {
      for (const m of read(file).matchAll(CITATION)) {
        const target = join('docs', m[1] as string)
        cited.push(`${file}: ${m[0]}`)
        if (!existsSync(join(ROOT, target)) || !anchorsOf(read(target)).has(m[2] as string)) broken.push(`${file}: ${m[0]}`)
      }
    }
    expect(broken).toEqual([])
    // src/ cites the page throughout; a scan that finds nothing is a broken scan.
    expect(cited.filter(c => c.startsWith('src')).length).toBeGreaterThan(20)
  })

  it('every relative link inside docs/ leads to an existing file and heading', () => {
    const broken: string[] = []
    for (const doc of DOCS) {
      const text = read(doc)
      for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        const link = m[1] as string
        if (/^[a-z]+:/i.test(link)) continue
        const [path, anchor] = link.split('#') as [string, string | undefined]
        const target = path === '' ? doc : relative(ROOT, resolve(ROOT, dirname(doc), path))
        if (!existsSync(join(ROOT, target))) {
          broken.push(`${doc}: ${link} (no such file)`)
          continue
        }
        if (anchor !== undefined && target.endsWith('.md') && !anchorsOf(read(target)).has(anchor)) broken.push(`${doc}: ${link}`)
      }
    }
    expect(broken).toEqual([])
  })
})

describe('githubSlug', () => {
  it.each([
    ['Payload boundary', 'payload-boundary'],
    ['del backend notices', 'del-backend-notices'],
    ['Results (issue 9)', 'results-issue-9'],
    ["The store's share", 'the-stores-share'],
    ['`show servers state`', 'show-servers-state'],
    ['With the desired-state store and the reconciler (issue 7)', 'with-the-desired-state-store-and-the-reconciler-issue-7']
  ])('%s → %s', (heading, slug) => {
    expect(githubSlug(heading)).toBe(slug)
  })

  it('numbers a repeated heading as GitHub does, and takes <a id> anchors', () => {
    expect([...anchorsOf('# A\n## A\n```\n# not a heading\n```\n<a id="x"></a>text\n')]).toEqual(['a', 'a-1', 'x'])
  })
})
