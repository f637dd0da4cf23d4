/**
 * Names that are also members of every plain object (`constructor`, `toString`, `__proto__`) are data
 * in the state document: GET /state and a merge patch must treat them like any other name.
 */
import { describe, expect, it } from 'vitest'
import { documentOf, targetOf } from '../../../src/resources/state/document.ts'
import { mergePatch } from '../../../src/resources/state/service.ts'
import { StateDocumentSchema } from '../../../src/schemas/state.ts'
import type { DesiredState } from '../../../src/engine/store/types.ts'

const server = (backend: string, name: string): DesiredState['servers'][number] =>
  ({ backend, name, spec: { address: '127.0.0.1', port: 80, check: false }, adminState: 'ready', weight: null, healthChecks: null, agentChecks: null })

describe('state document with names that plain objects already have', () => {
  it('GET /state lists a configuration backend named constructor and one named toString', () => {
    const state: DesiredState = {
      revision: 3,
      backends: [{ name: 'hasOwnProperty', from: 'mydefaults', mode: null, published: true }],
      servers: [server('constructor', 'valueOf'), server('hasOwnProperty', 'toString')],
      staticServers: [{ backend: 'toString', name: 'constructor', adminState: 'drain', weight: null }],
      maps: []
    }
    const doc = documentOf(state) as any
    expect(Object.keys(doc.configBackends).sort()).toEqual(['constructor', 'toString'])
    expect(Object.keys(doc.configBackends.constructor.servers)).toEqual(['valueOf'])
    expect(doc.configBackends.toString.serverSettings.constructor).toEqual({ state: 'drain' })
    expect(Object.keys(doc.backends.hasOwnProperty.servers)).toEqual(['toString'])
    // And it is a document PUT takes back, naming the same objects.
    const parsed = StateDocumentSchema.parse(doc)
    const target = targetOf(parsed)
    expect(target.servers.map(s => `${s.backend}/${s.name}`).sort()).toEqual(['constructor/valueOf', 'hasOwnProperty/toString'])
    expect(target.staticServers).toEqual([{ backend: 'toString', name: 'constructor', adminState: 'drain', weight: null }])
  })

  it('a merge patch adds, changes and removes members named constructor, __proto__ and toString', () => {
    const base = { backends: { constructor: { from: 'a' }, b: { from: 'b' } } }
    const patch = JSON.parse('{"backends": {"constructor": {"from": "c"}, "toString": {"from": "t"}, "b": null, "__proto__": {"from": "p"}}}')
    const out = mergePatch(base, patch) as any
    expect(Object.getPrototypeOf(out.backends)).toBe(Object.prototype)
    expect(Object.keys(out.backends).sort()).toEqual(['__proto__', 'constructor', 'toString'])
    expect(out.backends.constructor).toEqual({ from: 'c' })
    expect(Object.getOwnPropertyDescriptor(out.backends, '__proto__')?.value).toEqual({ from: 'p' })
  })
})
