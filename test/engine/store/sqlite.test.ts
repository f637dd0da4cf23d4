/**
 * The SQLite store against the store contract, plus what only a file can do: survive a reopen, and
 * refuse a file it cannot trust rather than start empty over it.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { openStore } from '../../../src/engine/store/index.ts'
import { SCHEMA_VERSION, SqliteStore } from '../../../src/engine/store/sqlite.ts'
import type { DesiredMapEntry } from '../../../src/engine/store/types.ts'
import { audit, at, backend, meta, server, storeContract } from './contract.ts'

const root = mkdtempSync(join(tmpdir(), 'hapctl-sqlite-'))
afterAll(() => rmSync(root, { recursive: true, force: true }))
let n = 0
/** A new folder under the run's temp folder, for one test. */
const folder = (): string => {
  const dir = join(root, String(++n))
  mkdirSync(dir)
  return dir
}

const opened: SqliteStore[] = []
afterEach(async () => {
  for (const s of opened.splice(0)) await s.close()
})
const open = async (path: string): Promise<SqliteStore> => {
  const store = await SqliteStore.open(path)
  opened.push(store)
  return store
}

/** A closed store file of several pages, with a bit of everything in it. */
async function filledFile (): Promise<string> {
  const file = join(folder(), 'hapctl.db')
  const store = await SqliteStore.open(file)
  await store.commit([
    { op: 'backend.put', backend: backend('b1') },
    { op: 'server.put', server: server('b1', 's1') },
    { op: 'map.replace', name: 'virt@m', entries: Array.from({ length: 3000 }, (_, i) => ({ key: `/path/${i}`, value: `backend-${i}` })) }
  ], meta)
  await store.close()
  return file
}

const refusal = async (path: string): Promise<Error> => {
  try {
    opened.push(await SqliteStore.open(path))
  } catch (err) {
    return err as Error
  }
  throw new Error(`${path} was opened`)
}

describe('SqliteStore', () => {
  storeContract(async () => await SqliteStore.open(join(folder(), 'hapctl.db')))

  it('describes itself with its absolute path, and is what openStore gives for a path', async () => {
    const file = join(folder(), 'x.db')
    const store = await openStore({ kind: 'sqlite', path: file, synchronous: 'full' })
    expect(store).toBeInstanceOf(SqliteStore)
    expect(store.description).toBe(`sqlite:${file}`)
    await store.close()
  })

  it('creates missing folders and the file', async () => {
    const file = join(folder(), 'a', 'b', 'c', 'hapctl.db')
    const store = await open(file)
    expect(statSync(file).isFile()).toBe(true)
    expect(await store.revision()).toBe(0)
  })

  it('sets WAL, the schema version and its application id in the file', async () => {
    const file = join(folder(), 'hapctl.db')
    await (await open(file)).close()
    const raw = new Database(file, { readonly: true })
    try {
      expect(raw.pragma('journal_mode', { simple: true })).toBe('wal')
      expect(raw.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION)
      expect(raw.pragma('application_id', { simple: true })).toBe(0x68617063)
    } finally {
      raw.close()
    }
  })

  it('keeps everything across a reopen', async () => {
    const file = join(folder(), 'hapctl.db')
    const first = await SqliteStore.open(file)
    await first.commit([
      { op: 'backend.put', backend: backend('b1', { mode: 'http', published: true }) },
      { op: 'server.put', server: server('b1', 's1', { weight: 3, healthChecks: true }) },
      { op: 'staticServer.put', settings: { backend: 'web', name: 'web1', adminState: 'drain', weight: null } },
      { op: 'map.replace', name: 'virt@m', entries: [{ key: 'b', value: '1' }, { key: 'a', value: '2' }] }
    ], meta)
    const last = await first.commit([{ op: 'map.set', name: 'virt@m', key: 'c', value: '3' }], meta)
    await first.setCreatedIn('b1', '77@1700000000')
    const state = await first.load()
    const history = await first.changesSince(0, 10)
    await first.close()

    const second = await open(file)
    expect(await second.revision()).toBe(last)
    expect(await second.load()).toEqual(state)
    expect(await second.changesSince(0, 10)).toEqual(history)
    expect(await second.createdIn()).toEqual(new Map([['b1', '77@1700000000']]))
    expect(await second.commit([{ op: 'backend.delete', name: 'b1' }], meta)).toBeGreaterThan(last)
  })

  it('upgrades a store of schema 1 (before the audit trail) in place, keeping its desired state', async () => {
    const file = await filledFile()
    // What a schema-1 file is: everything of schema 2 except the audit table.
    const raw = new Database(file)
    raw.exec('DROP TABLE audit')
    raw.pragma('user_version = 1')
    raw.close()
    const store = await open(file)
    expect((await store.load()).backends.map(b => b.name)).toEqual(['b1'])
    await store.appendAudit([audit('r1')])
    expect((await store.listAudit({ limit: 5 })).items.map(e => e.requestId)).toEqual(['r1'])
    await store.close()
    const check = new Database(file, { readonly: true })
    try {
      expect(check.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION)
    } finally {
      check.close()
    }
  })

  it('keeps the audit trail across a reopen, and answers its pages from the indexes, without a sort', async () => {
    const file = join(folder(), 'hapctl.db')
    const first = await SqliteStore.open(file)
    await first.appendAudit([audit('r1', { at: at(1) }), audit('r2', { at: at(2), target: { kind: 'map', id: 'virt@m' } })])
    const before = await first.listAudit({ limit: 10 })
    await first.close()
    const second = await open(file)
    expect(await second.listAudit({ limit: 10 })).toEqual(before)
    const raw = new Database(file, { readonly: true })
    try {
      const plan = (sql: string): string => (raw.prepare(`EXPLAIN QUERY PLAN ${sql}`).all() as Array<{ detail: string }>).map(r => r.detail).join('; ')
      const byTarget = plan("SELECT * FROM audit WHERE target_kind = 'map' AND target_id = 'x' AND at >= '2026' AND (at, id) < ('2027', 5) ORDER BY at DESC, id DESC LIMIT 11")
      expect(byTarget).toContain('audit_target')
      expect(byTarget).not.toContain('TEMP B-TREE')
      const byTime = plan("SELECT * FROM audit WHERE at >= '2026' AND at < '2027' ORDER BY at DESC, id DESC LIMIT 11")
      expect(byTime).toContain('audit_at')
      expect(byTime).not.toContain('TEMP B-TREE')
    } finally {
      raw.close()
    }
  })

  it('two stores on one file see each other\'s commits, and revisions still strictly increase', async () => {
    const file = join(folder(), 'hapctl.db')
    const a = await open(file)
    const b = await open(file)
    const r1 = await a.commit([{ op: 'backend.put', backend: backend('b1') }], meta)
    const r2 = await b.commit([{ op: 'backend.put', backend: backend('b2') }], meta)
    expect(r2).toBeGreaterThan(r1)
    expect((await a.load()).backends.map(x => x.name)).toEqual(['b1', 'b2'])
    expect(await a.revision()).toBe(r2)
  })

  it('takes an empty file as a new store', async () => {
    const file = join(folder(), 'hapctl.db')
    writeFileSync(file, '')
    expect(await (await open(file)).revision()).toBe(0)
  })

  describe('refuses, naming the file and what to do, and leaves the file alone', () => {
    it('a file that is not a database', async () => {
      const file = join(folder(), 'hapctl.db')
      const garbage = Buffer.from(Array.from({ length: 8192 }, (_, i) => (i * 7919 + 13) % 256))
      writeFileSync(file, garbage)
      const err = await refusal(file)
      expect(err.message).toContain(file)
      expect(err.message).toMatch(/not an SQLite database/)
      expect(err.message).toMatch(/HAPCTL_STORE/)
      expect(readFileSync(file)).toEqual(garbage)
    })

    it('a text file', async () => {
      const file = join(folder(), 'hapctl.db')
      writeFileSync(file, '{"version":1,"backends":{}}\n')
      expect((await refusal(file)).message).toMatch(/not an SQLite database/)
    })

    it('a truncated store', async () => {
      const file = await filledFile()
      truncateSync(file, Math.floor(statSync(file).size / 2))
      const before = readFileSync(file)
      const err = await refusal(file)
      expect(err.message).toContain(file)
      expect(err.message).toMatch(/corrupt|malformed/)
      expect(err.message).toMatch(/backup/)
      expect(readFileSync(file)).toEqual(before)
    })

    it('a store with garbage in its pages', async () => {
      const file = await filledFile()
      const bytes = readFileSync(file)
      // Past the header and the schema page, into the data pages.
      for (let i = 8192; i < Math.min(bytes.length, 8192 + 16384); i++) bytes[i] = (i * 31) % 256
      writeFileSync(file, bytes)
      const err = await refusal(file)
      expect(err.message).toContain(file)
      expect(err.message).toMatch(/corrupt|malformed/)
    })

    it('a store written by a newer hapctl', async () => {
      const file = join(folder(), 'hapctl.db')
      await (await SqliteStore.open(file)).close()
      const raw = new Database(file)
      raw.pragma(`user_version = ${SCHEMA_VERSION + 1}`)
      raw.close()
      const err = await refusal(file)
      expect(err.message).toContain(file)
      expect(err.message).toMatch(new RegExp(`newer hapctl \\(schema version ${SCHEMA_VERSION + 1}; this hapctl knows versions up to ${SCHEMA_VERSION}\\)`))
      const check = new Database(file, { readonly: true })
      expect(check.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION + 1)
      check.close()
    })

    it('the SQLite database of another application', async () => {
      const file = join(folder(), 'other.db')
      const raw = new Database(file)
      raw.exec('CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)')
      raw.close()
      const before = readFileSync(file)
      const err = await refusal(file)
      expect(err.message).toMatch(/another application/)
      // Not even switched to WAL: someone else's file is not touched.
      expect(readFileSync(file)).toEqual(before)
      const check = new Database(file, { readonly: true })
      expect(check.prepare("SELECT name FROM sqlite_schema WHERE type = 'table'").pluck().all()).toEqual(['notes'])
      check.close()
    })

    it('a folder where the file should be', async () => {
      const path = folder()
      const err = await refusal(path)
      expect(err.message).toContain(path)
      expect(err.message).toMatch(/not a file/)
    })

    it('a path whose folder cannot be made', async () => {
      const dir = folder()
      writeFileSync(join(dir, 'file'), 'x')
      const path = join(dir, 'file', 'sub', 'hapctl.db')
      const err = await refusal(path)
      expect(err.message).toContain(path)
      expect(err.message).toMatch(/cannot create its folder/)
    })
  })

  it('replaces a map of 100,000 entries in one commit (timing printed, not asserted)', async () => {
    const store = await open(join(folder(), 'hapctl.db'))
    const make = (tag: string): DesiredMapEntry[] =>
      Array.from({ length: 100_000 }, (_, i) => ({ key: `/api/v1/customers/${i}/orders`, value: `backend-${tag}-${i % 97}` }))
    const first = make('a')
    const second = make('b').reverse()

    let t = performance.now()
    await store.commit([{ op: 'map.replace', name: 'virt@big', entries: first }], meta)
    const intoEmpty = performance.now() - t
    t = performance.now()
    await store.commit([{ op: 'map.replace', name: 'virt@big', entries: second }], meta)
    const overFull = performance.now() - t
    t = performance.now()
    const state = await store.load()
    const load = performance.now() - t
    console.log(`SqliteStore map.replace of 100,000 entries: ${intoEmpty.toFixed(0)} ms into an empty map, ` +
      `${overFull.toFixed(0)} ms over 100,000 entries; load() of it ${load.toFixed(0)} ms`)

    expect(state.maps[0]?.entries).toHaveLength(100_000)
    expect(state.maps[0]?.entries[0]).toEqual(second[0])
    expect(state.maps[0]?.entries.at(-1)).toEqual(second.at(-1))
    const [record] = (await store.changesSince(1, 1))
    expect(record?.changes).toEqual([{ op: 'map.replace', name: 'virt@big', entryCount: 100_000 }])
  }, 60_000)
})
