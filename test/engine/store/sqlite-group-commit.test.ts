/**
 * The SQLite store's group commit and what each write costs in fsyncs: concurrent commits share a
 * transaction and still get their own revisions in order; a failing change fails alone, also when it
 * ends the whole transaction; a commit resolves only once it is committed; an audit entry has no
 * fsync of its own and reaches the disk with the next commit or soon after; a process killed right
 * after its answers keeps every commit it answered.
 */
import { spawn, spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import Database from 'better-sqlite3'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { Executor } from '../../../src/engine/executor.ts'
import { commandStep } from '../../../src/engine/plan.ts'
import { AUDIT_SYNC_DELAY_MS, SqliteStore } from '../../../src/engine/store/sqlite.ts'
import type { DesiredChange } from '../../../src/engine/store/types.ts'
import { fakeRuntime } from '../../helpers/fake-runtime.ts'
import { command } from '../../helpers/executor.ts'
import { nodeCommand } from '../../helpers/node.ts'
import { audit, backend, meta } from './contract.ts'

const ROOT = fileURLToPath(new URL('../../..', import.meta.url))
const CHILD = fileURLToPath(new URL('./store-child.ts', import.meta.url))

const root = mkdtempSync(join(tmpdir(), 'hapctl-group-'))
afterAll(() => rmSync(root, { recursive: true, force: true }))
let n = 0
const file = (): string => {
  const dir = join(root, String(++n))
  mkdirSync(dir)
  return join(dir, 'hapctl.db')
}

const opened: SqliteStore[] = []
afterEach(async () => {
  for (const s of opened.splice(0)) await s.close()
})
const open = async (path = file()): Promise<SqliteStore> => {
  const store = await SqliteStore.open(path)
  opened.push(store)
  return store
}

const put = (name: string): DesiredChange[] => [{ op: 'backend.put', backend: backend(name) }]
const metaFor = (id: string) => ({ ...meta, target: { kind: 'backend', id }, requestId: id })

describe('SqliteStore group commit', () => {
  it('concurrent commits get consecutive revisions in the order asked, each with its own record; invalid ones fail alone and take none', async () => {
    const store = await open()
    const before = await store.revision()
    const names = Array.from({ length: 64 }, (_, i) => `b${i}`)
    const results = await Promise.allSettled(names.map(async (name, i) =>
      // Two of them cannot be applied: map.set on a map that is not managed.
      await store.commit(i === 10 || i === 40 ? [...put(name), { op: 'map.set', name: 'virt@x', key: 'k', value: 'v' }] : put(name), metaFor(name))))
    expect(results.filter(r => r.status === 'rejected').map((r, i) => [i, (r as PromiseRejectedResult).reason.name])).toEqual([[0, 'StoreChangeError'], [1, 'StoreChangeError']])
    const revisions = results.flatMap(r => r.status === 'fulfilled' ? [r.value] : [])
    expect(revisions).toEqual(Array.from({ length: 62 }, (_, i) => before + 1 + i))
    const history = await store.changesSince(before, 100)
    const kept = names.filter((_, i) => i !== 10 && i !== 40)
    expect(history.map(r => [r.revision, r.requestId])).toEqual(kept.map((name, i) => [before + 1 + i, name]))
    expect((await store.listBackends()).map(b => b.name).sort()).toEqual([...kept].sort())
  })

  it('a change that ends the whole transaction (as a full disk does) fails alone: the others of its group are committed one by one', async () => {
    const path = file()
    const store = await open(path)
    // RAISE(ROLLBACK) rolls back the whole transaction, not only the savepoint, as SQLITE_FULL or an
    // I/O error does: the commits before it in the group are gone, and the rest must not run outside one.
    const other = new Database(path)
    other.exec("CREATE TRIGGER boom BEFORE INSERT ON backends WHEN NEW.name = 'boom' BEGIN SELECT RAISE(ROLLBACK, 'simulated: database or disk is full'); END")
    other.close()
    const names = ['a1', 'a2', 'boom', 'a3']
    const results = await Promise.allSettled(names.map(async name => await store.commit(put(name), metaFor(name))))
    expect(results.map(r => r.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'fulfilled'])
    expect((results[2] as PromiseRejectedResult).reason.message).toMatch(/simulated/)
    const revisions = results.flatMap(r => r.status === 'fulfilled' ? [r.value] : [])
    expect(revisions).toEqual([...revisions].sort((x, y) => x - y))
    expect((await store.listBackends()).map(b => b.name)).toEqual(['a1', 'a2', 'a3'])
    expect((await store.changesSince(0, 10)).map(r => r.requestId)).toEqual(['a1', 'a2', 'a3'])
  })

  it('a group refused for a lock held by another process fails at once, without each commit waiting again', async () => {
    const path = file()
    const store = await open(path)
    const other = new Database(path)
    try {
      other.prepare('BEGIN IMMEDIATE').run()
      const started = Date.now()
      // The store waits its busy_timeout (5 s) once for the group; one by one, it would be 4 × 5 s more.
      const results = await Promise.allSettled(['l1', 'l2', 'l3', 'l4'].map(async name => await store.commit(put(name), metaFor(name))))
      expect(results.map(r => r.status === 'rejected' ? (r.reason as { code?: string }).code : r.status)).toEqual(['SQLITE_BUSY', 'SQLITE_BUSY', 'SQLITE_BUSY', 'SQLITE_BUSY'])
      expect(Date.now() - started).toBeLessThan(12_000)
    } finally {
      other.prepare('ROLLBACK').run()
      other.close()
    }
    expect(await store.commit(put('after'), metaFor('after'))).toBe(1)
  }, 30_000)

  it('a commit resolves only once its transaction is committed: another connection sees it then', async () => {
    const path = file()
    const store = await open(path)
    const reader = new Database(path, { readonly: true })
    try {
      const committed = (revision: number): unknown => reader.prepare('SELECT request_id FROM revisions WHERE revision = ?').pluck().get(revision)
      const seen: unknown[] = []
      await Promise.all(['c1', 'c2', 'c3'].map(async name => {
        const revision = await store.commit(put(name), metaFor(name))
        seen.push(committed(revision))
      }))
      expect(seen).toEqual(['c1', 'c2', 'c3'])
      // An audit entry too: in the file (WAL) when appendAudit resolves.
      await store.appendAudit([audit('entry-1')])
      expect(reader.prepare('SELECT count(*) FROM audit WHERE request_id = ?').pluck().get('entry-1')).toBe(1)
    } finally {
      reader.close()
    }
  })

  it('close() writes the commits still queued before closing', async () => {
    const path = file()
    const store = await SqliteStore.open(path)
    const pending = store.commit(put('late'), metaFor('late'))
    await store.close()
    const revision = await pending
    const again = await open(path)
    expect(await again.revision()).toBe(revision)
    expect(await again.getBackend('late')).toMatchObject({ name: 'late' })
  })

  it('through the executor, listeners see every revision once, in increasing order, and each run gets its own', async () => {
    const store = await open()
    const executor = new Executor({ runtime: fakeRuntime(() => ''), store, lockTimeoutMs: 1000 })
    const heard: number[] = []
    executor.onCommit(event => { heard.push(event.revision) })
    const outcomes = await Promise.all(Array.from({ length: 40 }, async (_, i) => {
      const target = { kind: 'backend', id: `e${i}` }
      return (await executor.run({ target }, async () => ({ target, action: 'create', steps: [commandStep([command(`x${i}`)], [])], changes: put(`e${i}`) }))).outcome
    }))
    const revisions = outcomes.map(o => o.revision as number)
    expect(new Set(revisions).size).toBe(40)
    expect(heard).toEqual([...revisions].sort((x, y) => x - y))
    expect(heard).toEqual([...heard].sort((x, y) => x - y))
    const history = await store.changesSince(0, 100)
    for (const [i, o] of outcomes.entries()) expect(history.find(r => r.revision === o.revision)?.target.id).toBe(`e${i}`)
  })
})

/** Runs the child under strace; the lines of its trace (fsync, fdatasync, and its writes to stdout). */
function traced (path: string, args: string[]): string[] {
  const node = nodeCommand()
  const out = join(root, `strace-${++n}.txt`)
  const run = spawnSync('strace', ['-f', '-qq', '-y', '-s', '64', '-o', out, '-e', 'trace=fsync,fdatasync,write',
    node.command, ...node.args, '--import', 'tsx', CHILD, path, ...args], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 })
  if (run.status !== 0) throw new Error(`the traced child failed (${run.status}): ${run.stderr}`)
  return readFileSync(out, 'utf8').split('\n')
}

type Event = { pid: string, kind: 'sync', path: string } | { pid: string, kind: 'say', text: string }

/** The fsyncs and the lines said on stdout, in order. */
function events (lines: string[]): Event[] {
  const out: Event[] = []
  for (const line of lines) {
    // The call as it starts (with -f, strace splits a call another thread interrupts: `<unfinished ...>`).
    const sync = /^(\d+)\s+f(?:data)?sync\(\d+<([^>]*)>/.exec(line)
    if (sync !== null) { out.push({ pid: sync[1] as string, kind: 'sync', path: sync[2] as string }); continue }
    const say = /^(\d+)\s+write\(1(?:<[^>]*>)?, "([^"\\]*)\\n"/.exec(line)
    if (say !== null) out.push({ pid: say[1] as string, kind: 'say', text: say[2] as string })
  }
  return out
}

const hasStrace = spawnSync('strace', ['-qq', '-e', 'trace=none', 'true']).status === 0

describe.skipIf(!hasStrace)('SqliteStore fsyncs (strace)', () => {
  it('a write (its commit, then its audit entry) costs one fsync, of the WAL, before the commit resolves', () => {
    const writes = 30
    const all = events(traced(file(), ['writes', String(writes)]))
    const ready = all.findIndex(e => e.kind === 'say' && e.text === 'ready')
    const done = all.findIndex(e => e.kind === 'say' && e.text === 'done')
    expect(ready).toBeGreaterThan(-1)
    expect(done).toBeGreaterThan(ready)
    const main = all[ready]?.pid
    // Between two lines said, the syncs of the event loop's thread (the background one runs on others).
    let syncs: Array<Event & { kind: 'sync' }> = []
    const perStep: string[] = []
    for (const e of all.slice(ready + 1, done)) {
      if (e.kind === 'sync') { if (e.pid === main) syncs.push(e); continue }
      perStep.push(`${e.text.split(' ')[0] as string}:${syncs.map(s => s.path.endsWith('-wal') ? 'wal' : s.path).join(',')}`)
      syncs = []
    }
    expect(perStep).toEqual(Array.from({ length: writes }, () => ['committed:wal', 'audited:']).flat())
    // Over the whole run, the thread pool's syncs included: not a second fsync per write.
    const total = all.slice(ready + 1, done).filter(e => e.kind === 'sync').length
    expect(total).toBeLessThanOrEqual(writes + 5)
  })

  it('commits asked for at once share one transaction and one fsync', () => {
    const all = events(traced(file(), ['burst', '20']))
    const ready = all.findIndex(e => e.kind === 'say' && e.text === 'ready')
    const done = all.findIndex(e => e.kind === 'say' && e.text === 'done')
    expect(done).toBeGreaterThan(ready)
    expect(all.slice(ready + 1, done).filter(e => e.kind === 'sync').map(e => e.kind === 'sync' && e.path.endsWith('-wal'))).toEqual([true])
  })

  it('an audit entry no commit follows is fsynced (the WAL, off the event loop) soon after it is written', () => {
    const all = events(traced(file(), ['audit']))
    const at = (text: string): number => all.findIndex(e => e.kind === 'say' && e.text === text)
    const [ready, audited, idle] = [at('ready'), at('audited 1'), at('idle')]
    expect(ready).toBeGreaterThan(-1)
    expect(audited).toBeGreaterThan(ready)
    expect(idle).toBeGreaterThan(audited)
    expect(all.slice(ready + 1, audited).filter(e => e.kind === 'sync')).toEqual([])
    const later = all.slice(audited + 1, idle).filter(e => e.kind === 'sync')
    expect(later.map(e => e.kind === 'sync' && e.path.endsWith('-wal'))).toContain(true)
    // Within its delay and a generous margin: the child idles 1 s after the entry, far above it.
    expect(AUDIT_SYNC_DELAY_MS).toBeLessThan(500)
  })
})

describe('SqliteStore killed right after its answers', () => {
  it('keeps every commit it answered, with its revision', async () => {
    const path = file()
    const node = nodeCommand()
    const child = spawn(node.command, [...node.args, '--import', 'tsx', CHILD, path, 'forever', '16'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
    const acked = new Map<number, number>()
    let err = ''
    child.stderr.on('data', (b: Buffer) => { err += b.toString('utf8') })
    const exited = new Promise<NodeJS.Signals | null>(resolve => child.once('exit', (_code, signal) => resolve(signal)))
    await new Promise<void>((resolve, reject) => {
      let buffered = ''
      child.stdout.on('data', (b: Buffer) => {
        buffered += b.toString('utf8')
        const lines = buffered.split('\n')
        buffered = lines.pop() as string
        for (const line of lines) {
          const m = /^ack (\d+) (\d+)$/.exec(line)
          if (m !== null) acked.set(Number(m[1]), Number(m[2]))
        }
        // Killed while 16 writers are committing: some of their commits are queued, some written.
        if (acked.size >= 400) { child.kill('SIGKILL'); resolve() }
      })
      child.once('exit', () => { if (acked.size < 400) reject(new Error(`the child exited after ${acked.size} answers: ${err}`)) })
    })
    expect(await exited).toBe('SIGKILL')
    const store = await open(path)
    const map = new Map((await store.getMap('virt@m'))?.entries.map(e => [e.key, e.value]))
    const history = new Map((await store.changesSince(0, 100_000)).map(r => [r.revision, r.requestId]))
    const missing = [...acked].filter(([i, revision]) => map.get(`k${i}`) !== `v${i}` || history.get(revision) !== `r${i}`)
    expect(missing).toEqual([])
    expect(new Set(acked.values()).size).toBe(acked.size)
  }, 60_000)
})
