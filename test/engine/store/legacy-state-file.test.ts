/**
 * The state file of the hapctl before the store, read once for an import.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { readLegacyStateFile } from '../../../src/engine/store/legacy-state-file.ts'

let dir: string | undefined
afterEach(() => { if (dir !== undefined) rmSync(dir, { recursive: true, force: true }); dir = undefined })
const path = (): string => { dir = mkdtempSync(join(tmpdir(), 'hapctl-legacy-')); return join(dir, 'state.json') }
const write = (content: unknown): string => {
  const file = path()
  writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content))
  return file
}
const entry = { from: 'mydefaults', createdAt: '2026-11-24T00:00:00.000Z', dynamicServers: true }

describe('readLegacyStateFile', () => {
  it('is undefined when there is no file', () => {
    expect(readLegacyStateFile(path())).toBeUndefined()
  })

  it('reads the process and each backend with its defaults section', () => {
    const file = write({
      version: 1,
      process: '1234@1700000000',
      backends: { b1: entry, b2: { ...entry, from: 'nomode', dynamicServers: false, dynamicServersNote: 'static-rr' } }
    })
    expect(readLegacyStateFile(file)).toEqual({
      process: '1234@1700000000',
      backends: [{ name: 'b1', from: 'mydefaults' }, { name: 'b2', from: 'nomode' }]
    })
  })

  it('takes a file without a process (written before HAProxy first answered)', () => {
    expect(readLegacyStateFile(write({ version: 1, backends: {} }))).toEqual({ process: undefined, backends: [] })
    expect(readLegacyStateFile(write({ version: 1, process: null, backends: {} }))).toEqual({ process: undefined, backends: [] })
  })

  // Byte for byte what the BackendCatalog of src/services/catalog.ts wrote (JSON.stringify(_, null, 2)
  // and a newline; dynamicServersNote left out when undefined). Not produced by importing it: that
  // code goes away with the store.
  it('reads a file as the old BackendCatalog wrote it', () => {
    const file = write(`{
  "version": 1,
  "process": "42@1000",
  "backends": {
    "mybackend1": {
      "from": "mydefaults",
      "createdAt": "2026-11-24T10:00:00.000Z",
      "dynamicServers": true
    },
    "mybackend2": {
      "from": "static",
      "createdAt": "2026-11-24T10:01:00.000Z",
      "dynamicServers": false,
      "dynamicServersNote": "the backend's balance algorithm is static"
    }
  }
}
`)
    expect(readLegacyStateFile(file)).toEqual({
      process: '42@1000',
      backends: [{ name: 'mybackend1', from: 'mydefaults' }, { name: 'mybackend2', from: 'static' }]
    })
  })

  it.each([
    ['not JSON', '{ version: 1', /is not JSON/],
    ['an array', [], /is not a hapctl state file/],
    ['another version', { version: 2, backends: {} }, /version/],
    ['no backends', { version: 1 }, /backends/],
    ['a backend without from', { version: 1, backends: { b1: { createdAt: 'x' } } }, /backends\.b1\.from/],
    ['a backend that is not an object', { version: 1, backends: { b1: 'mydefaults' } }, /backends\.b1/],
    ['a process that is a number', { version: 1, process: 12, backends: {} }, /process/]
  ])('refuses %s, naming the file and what to do', (_, content, problem) => {
    const file = write(content)
    expect(() => readLegacyStateFile(file)).toThrow(problem)
    expect(() => readLegacyStateFile(file)).toThrow(file)
    expect(() => readLegacyStateFile(file)).toThrow(/move it away/)
  })

  it('says so when the path cannot be read', () => {
    const file = path()
    mkdirSync(file)
    expect(() => readLegacyStateFile(file)).toThrow(`cannot read HAPCTL_STATE_FILE ${file}`)
  })
})
