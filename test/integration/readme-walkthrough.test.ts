import { execFileSync, spawn } from 'node:child_process'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startHapctl } from '../helpers/hapctl-process.ts'
import type { HapctlProcess } from '../helpers/hapctl-process.ts'
import { startHaproxy } from '../helpers/haproxy.ts'
import type { HaproxyInstance } from '../helpers/haproxy.ts'

/*
 * The README's "Walk-through: a dynamic backend, end to end", pasted as it is into bash against the
 * demo's setup (`npm run demo`): HAProxy in master-worker mode with examples/haproxy.cfg, its master's
 * pid in .tmp/demo-haproxy.pid, the upstreams web1 and app1, and hapctl as its own process.
 *
 * What the README promises, checked command by command:
 * - a command with a trailing `# …` comment prints exactly that (trailing blanks aside), where `…`
 *   stands for any text;
 * - a command without one prints nothing (stderr included);
 * - an sh block followed by a json block prints that JSON.
 *
 * The block's fixed ports (hapctl 5555, frontend 8080, upstreams 8081 and 8082, Runtime API 9999) are
 * rewritten to free ones, in the commands and in what they are said to print alike, so that the test
 * runs next to others (and next to a demo someone left running); nothing else of the text is changed.
 * HAPCTL_WALKTHROUGH_FILE reads the section from another Markdown file (a draft) instead of README.md.
 */

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const HEADING = '### Walk-through: a dynamic backend, end to end'
const DEMO_PORTS = { hapctl: 5555, frontend: 8080, web1: 8081, app1: 8082, runtime: 9999 } as const

type Block = { lang: string, text: string }

/** The fenced blocks of the section under `heading`, up to the next heading of level 1 to 3. */
function sectionBlocks (markdown: string, heading: string): Block[] {
  const lines = markdown.split('\n')
  const start = lines.findIndex(l => l.trimEnd() === heading)
  if (start < 0) throw new Error(`no "${heading}" section`)
  const blocks: Block[] = []
  let open: { lang: string, lines: string[] } | undefined
  for (const line of lines.slice(start + 1)) {
    const fence = /^```(\S*)\s*$/.exec(line)
    if (open !== undefined) {
      if (fence !== null && fence[1] === '') { blocks.push({ lang: open.lang, text: open.lines.join('\n') }); open = undefined } else open.lines.push(line)
      continue
    }
    if (fence !== null) { open = { lang: fence[1] ?? '', lines: [] }; continue }
    if (/^#{1,3} /.test(line)) break
  }
  return blocks
}

/** Where the trailing comment of a shell line starts (a `#` starting a word outside quotes), or -1. */
function commentStart (line: string): number {
  let quote: '"' | "'" | '$' | undefined
  for (let i = 0; i < line.length; i++) {
    const c = line[i]
    if (quote === "'") { if (c === "'") quote = undefined; continue }
    if (quote === '$') { if (c === '\\') i++; else if (c === "'") quote = undefined; continue }
    if (quote === '"') { if (c === '\\') i++; else if (c === '"') quote = undefined; continue }
    if (c === '\\') { i++; continue }
    if (c === '$' && line[i + 1] === "'") { quote = '$'; i++; continue }
    if (c === "'" || c === '"') { quote = c; continue }
    if (c === '#' && (i === 0 || /\s/.test(line[i - 1] as string))) return i
  }
  return -1
}

type Command = { text: string, expected: string | undefined, line: number }

/**
 * The commands of an sh block: a line that is not blank or a comment, with its `\` continuation lines;
 * `expected` is its last line's trailing comment. Heredocs are refused: this splitter does not read them.
 */
function commandsOf (block: string): Command[] {
  const out: Command[] = []
  let current: string[] | undefined
  let first = 0
  block.split('\n').forEach((line, i) => {
    if (current === undefined) {
      if (line.trim() === '' || line.trimStart().startsWith('#')) return
      current = []
      first = i + 1
    }
    if (/<<-?\s*['"]?\w/.test(line)) throw new Error(`line ${i + 1}: a heredoc; the walk-through test cannot split it`)
    const at = commentStart(line)
    const code = (at < 0 ? line : line.slice(0, at)).trimEnd()
    current.push(code)
    if (code.endsWith('\\')) return
    out.push({ text: current.join('\n'), expected: at < 0 ? undefined : line.slice(at + 1).trim(), line: first })
    current = undefined
  })
  if (current !== undefined) throw new Error('the block ends inside a continued line')
  return out
}

/** `expected` as a whole-output pattern: literal text, `…` for anything. */
function expectedPattern (expected: string): RegExp {
  const parts = expected.split('…').map(p => p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
  return new RegExp(`^${parts.join('[\\s\\S]*')}$`)
}

/** The demo's ports in `text` replaced by `ports`, in one pass (a new port is never rewritten again). */
function rewritePorts (text: string, ports: Record<keyof typeof DEMO_PORTS, number>): string {
  const keys = Object.keys(DEMO_PORTS) as Array<keyof typeof DEMO_PORTS>
  const byPort = new Map(keys.map(k => [String(DEMO_PORTS[k]), String(ports[k])]))
  return text.replace(new RegExp(`\\b(${[...byPort.keys()].join('|')})\\b`, 'g'), p => byPort.get(p) as string)
}

function hasCurl (): boolean {
  try {
    execFileSync('curl', ['--version'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

const curl = hasCurl()
if (!curl) console.warn('readme-walkthrough.test.ts: skipped, curl is not installed (the README walk-through is curl commands)')

describe.skipIf(!curl)('the README walk-through, pasted into bash', () => {
  let h: HaproxyInstance | undefined
  let hapctl: HapctlProcess | undefined
  let cwd: string | undefined
  const source = process.env.HAPCTL_WALKTHROUGH_FILE ?? join(ROOT, 'README.md')

  beforeAll(async () => {
    const example = await readFile(join(ROOT, 'examples/haproxy.cfg'), 'utf8')
    h = await startHaproxy({
      masterWorker: true,
      upstreams: ['web1', 'app1'],
      // examples/haproxy.cfg itself, on this instance's ports.
      config: ctx => rewritePorts(example, { hapctl: 0, frontend: ctx.frontend, web1: ctx.upstreams.web1!.port, app1: ctx.upstreams.app1!.port, runtime: ctx.runtime })
    })
    hapctl = await startHapctl({ env: { HAPROXY_RUNTIME_API: h.runtimeApi } })
    cwd = await mkdtemp(join(tmpdir(), 'hapctl-walkthrough-'))
    // The demo writes the master's pid there (`haproxy -W -p .tmp/demo-haproxy.pid`); the walk-through reloads with it.
    await mkdir(join(cwd, '.tmp'))
    await writeFile(join(cwd, '.tmp/demo-haproxy.pid'), `${h.masterPid}\n`)
  })
  afterAll(async () => {
    await hapctl?.kill()
    await h?.stop()
    if (cwd !== undefined) await rm(cwd, { recursive: true, force: true })
  })

  it('prints what its comments say', async () => {
    const haproxy = h as HaproxyInstance
    const ports = { hapctl: (hapctl as HapctlProcess).port, frontend: haproxy.ports.frontend, web1: haproxy.upstreams.web1!.port, app1: haproxy.upstreams.app1!.port, runtime: haproxy.ports.runtime }
    const blocks = sectionBlocks(await readFile(source, 'utf8'), HEADING)
    // Each sh block, its commands, and the JSON the block is said to print (a json block right after it).
    const shells = blocks.flatMap((b, i) => b.lang === 'sh'
      ? [{ commands: commandsOf(rewritePorts(b.text, ports)), json: blocks[i + 1]?.lang === 'json' ? JSON.parse(rewritePorts((blocks[i + 1] as Block).text, ports)) as unknown : undefined }]
      : [])
    expect(shells.length, `no sh block under "${HEADING}" in ${source}`).toBeGreaterThan(0)
    const all = shells.flatMap(s => s.commands)

    // One bash, as a paste into one shell: a marker (ASCII RS + the command's index) before each
    // command tells their outputs apart; stderr goes with stdout so that errors count as output.
    const RS = String.fromCharCode(0x1e)
    const script = ['exec 2>&1', ...all.flatMap((c, i) => [`printf '\\036${i}\\036'`, c.text]), 'printf \'\\036end\\036\''].join('\n')
    const output = await runBash(script, cwd as string)
    const pieces = output.split(new RegExp(`${RS}(?:\\d+|end)${RS}`))
    expect(pieces.length, `bash stopped early; its output:\n${output}`).toBe(all.length + 2)
    const outputs = pieces.slice(1, -1)

    const problems: string[] = []
    // The last command of a block followed by a json block is checked against that JSON below.
    const saysJson = new Set<Command>()
    for (const s of shells) if (s.json !== undefined && s.commands.length > 0) saysJson.add(s.commands.at(-1) as Command)
    all.forEach((c, i) => {
      const printed = (outputs[i] as string).replace(/\s+$/, '')
      if (saysJson.has(c)) return
      if (c.expected === undefined) {
        if (printed !== '') problems.push(`${c.text}\n  says nothing, printed: ${printed}`)
      } else if (!expectedPattern(c.expected).test(printed)) {
        problems.push(`${c.text}\n  says:    ${c.expected}\n  printed: ${printed}`)
      }
    })
    let at = 0
    for (const s of shells) {
      const last = at + s.commands.length - 1
      at += s.commands.length
      if (s.json === undefined) continue
      const printed = (outputs[last] as string).trim()
      let parsed: unknown
      try { parsed = JSON.parse(printed) } catch { problems.push(`${all[last]?.text}\n  is said to print JSON, printed: ${printed}`); continue }
      try { expect(parsed).toEqual(s.json) } catch (err) { problems.push(`${all[last]?.text}\n  prints other JSON than the block after it: ${(err as Error).message}`) }
    }
    expect(problems, `${problems.length} of ${all.length} commands do not print what the walk-through says (${source}):\n\n${problems.join('\n\n')}\n`).toEqual([])
  }, 120_000)
})

/** Runs `script` with bash in `cwd`; resolves with its stdout (stderr is redirected into it). */
function runBash (script: string, cwd: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-c', script], { cwd, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: cwd }, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.setEncoding('utf8').on('data', (s: string) => { out += s })
    child.stderr.setEncoding('utf8').on('data', (s: string) => { out += s })
    const timer = setTimeout(() => { child.kill('SIGKILL') }, 110_000)
    child.once('error', reject)
    child.once('close', () => { clearTimeout(timer); resolve(out) })
  })
}
