import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import type { ProcessInfo } from '../../src/runtime/parsers.ts'
import { BackendCatalog } from '../../src/services/catalog.ts'

const proc = (pid: number, startTimeSec = 1000): ProcessInfo =>
  ({ version: '3.4.7-1', releaseDate: '', pid, uptimeSec: 1, startTimeSec, stopping: false, nodeName: '' })
const entry = { from: 'mydefaults', createdAt: '2026-11-24T00:00:00.000Z', dynamicServers: true, dynamicServersNote: undefined }

let dir: string | undefined
afterEach(() => { if (dir !== undefined) rmSync(dir, { recursive: true, force: true }) })
const stateFile = (): string => { dir = mkdtempSync(join(tmpdir(), 'hapctl-catalog-')); return join(dir, 'state.json') }

describe('BackendCatalog', () => {
  it('forgets runtime backends when another HAProxy process answers', () => {
    const c = new BackendCatalog()
    c.observe(proc(1))
    c.add('b1', entry)
    c.observe(proc(1))
    expect(c.get('b1')).toEqual(entry)
    c.observe(proc(1, 2000)) // same pid, new start time: a restart that reused the pid
    expect(c.get('b1')).toBeUndefined()
  })

  it('survives a restart of hapctl through its state file, for the same HAProxy process only', () => {
    const file = stateFile()
    const first = new BackendCatalog({ file })
    first.observe(proc(7))
    first.add('b1', entry)
    first.add('b2', entry)
    first.delete('b2')

    const second = new BackendCatalog({ file })
    second.observe(proc(7))
    expect(second.get('b1')).toEqual(entry)
    expect(second.get('b2')).toBeUndefined()

    const third = new BackendCatalog({ file })
    third.observe(proc(8)) // HAProxy restarted while hapctl was down
    expect(third.get('b1')).toBeUndefined()
    expect(JSON.parse(readFileSync(file, 'utf8'))).toMatchObject({ version: 1, process: '8@1000', backends: {} })
  })

  it('refuses a state file it did not write instead of starting with wrong beliefs', () => {
    const file = stateFile()
    new BackendCatalog({ file }).observe(proc(1))
    writeFileSync(file, '{"hello": 1}')
    expect(() => new BackendCatalog({ file })).toThrow(/not a hapctl state file/)
    // Valid JSON with entries of the wrong shape would break every listing later.
    writeFileSync(file, JSON.stringify({ version: 1, process: '1@1000', backends: { webservers: { from: 42 } } }))
    expect(() => new BackendCatalog({ file })).toThrow(/bad entry for backend 'webservers'/)
    writeFileSync(file, JSON.stringify({ version: 1, backends: [1, 2] }))
    expect(() => new BackendCatalog({ file })).toThrow(/bad backends/)
  })

  it('refuses at start a state file it cannot write, rather than at the first backend', () => {
    const file = join(stateFile(), 'no-such-folder', 'state.json')
    expect(() => new BackendCatalog({ file })).toThrow(/cannot write HAPCTL_STATE_FILE/)
  })
})
