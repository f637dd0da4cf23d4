/**
 * A small model of one HAProxy map for route and service tests, answering with 3.4.7's exact strings
 * (`show map`, `get map`, `add|set|del map`, `prepare|commit|clear map`, `add map @N <<` payloads),
 * with its versions: `show map` reports the real `curr_ver`/`next_ver`, so a test can lose a commit's
 * answer after the commit happened and watch the code ask which version is live.
 *
 * `hooks` replaces the answer to one command text (or `payload`, for every payload command): a string or an
 * Error is answered as is; a function gets `real` (which runs the command in the model and returns its
 * answer) and decides, e.g. `real => { real(); return new RuntimeTimeoutError(5000, 'commit map') }`.
 */
import type { PayloadCommand } from '../../src/runtime/client.ts'
import { fakeRuntime } from './fake-runtime.ts'
import type { FakeRuntime } from './fake-runtime.ts'

export const MAP = 'virt@paths.map'
export const MAP_ID = 5

type Answer = string | Error
export type Hook = Answer | ((real: () => Answer) => Answer)

export type FakeMaps = {
  runtime: FakeRuntime
  /** Payloads received, in order. */
  payloads: string[]
  /** The live entries as `key value`. */
  live: () => string[]
  /** curr_ver and next_ver. */
  versions: () => { current: number, next: number }
  hooks: Record<string, Hook>
}

/** Splits a CLI line the way HAProxy does for the commands used here (`\ ` is a space inside a word). */
const words = (text: string): string[] => text.split(/(?<!\\) /).map(w => w.replaceAll('\\ ', ' '))

export function fakeMaps (initial: Array<[string, string]> = [], hooks: Record<string, Hook> = {}): FakeMaps {
  let live = initial.map(([key, value]) => ({ key, value }))
  const pending = new Map<number, Array<{ key: string, value: string }>>()
  let current = 0
  let next = 0
  const dump = (es: typeof live): string => es.map((e, i) => `0x${(0x1000 + i).toString(16)} ${e.key} ${e.value}`).join('\n')
  const list = (): string => `# id (file) description\n${MAP_ID} (${MAP}) pattern loaded from file '${MAP}' used by map at file 'h.cfg' line 35. curr_ver=${current} next_ver=${next} entry_cnt=${live.length}`

  const real = (text: string): Answer => {
    const w = words(text)
    const [verb, , a, b, c] = w
    if (text === 'show map') return list()
    const name = a?.startsWith('@') ? b : a
    if (name !== MAP && name !== `#${MAP_ID}`) return 'Unknown map identifier. Please use #<id> or <file>.'
    const version = a?.startsWith('@') ? Number(a.slice(1)) : undefined
    const key = version === undefined ? b : c
    switch (`${verb} map`) {
      case 'get map': {
        // map_beg: the longest key that is a prefix of the sample, oldest first among equals.
        const hit = live.filter(e => (b as string).startsWith(e.key)).sort((x, y) => y.key.length - x.key.length)[0]
        return hit === undefined
          ? 'type=beg, case=sensitive, found=no'
          : `type=beg, case=sensitive, found=yes, idx=tree, key="${hit.key}", value="${hit.value}", type="str"`
      }
      case 'show map': return dump(version === undefined ? live : pending.get(version) ?? [])
      case 'add map': live.push({ key: key as string, value: w.slice(version === undefined ? 4 : 5).join(' ') }); return ''
      case 'set map': {
        const hits = live.filter(e => e.key === b)
        if (hits.length === 0) return 'entry not found.'
        for (const h of hits) h.value = c as string
        return ''
      }
      case 'del map': {
        const i = live.findIndex(e => e.key === b)
        if (i === -1) return 'Key not found.'
        live.splice(i, 1)
        return ''
      }
      case 'prepare map': pending.set(++next, []); return `New version created: ${next}`
      case 'commit map': {
        if (version === undefined) return 'Missing version number.'
        const v = pending.get(version)
        if (v === undefined || version <= current || version > next) return 'Version number out of range.'
        live = v
        current = version
        for (const k of [...pending.keys()]) if (k <= version) pending.delete(k)
        return ''
      }
      case 'clear map':
        if (version === undefined) live = []
        else pending.set(version, [])
        return ''
    }
    return `Unknown command: '${verb}'`
  }

  const answer = (text: string): Answer => {
    const hook = hooks[text]
    if (hook === undefined) return real(text)
    return typeof hook === 'function' ? hook(() => real(text)) : hook
  }

  const runtime = fakeRuntime(text => answer(text))
  const payloads: string[] = []
  runtime.executePayload = async <T>(command: PayloadCommand<T>): Promise<T> => {
    runtime.sent.push(command.text + ' [payload]')
    const store = (): Answer => {
      payloads.push(command.payload)
      const [, , at] = words(command.text)
      const v = pending.get(Number((at as string).slice(1)))
      if (v === undefined) return "Version number in the future, please use 'prepare map' before."
      for (const l of command.payload.slice(0, -1).split('\n')) {
        const i = l.indexOf(' ')
        v.push({ key: l.slice(0, i), value: l.slice(i + 1) })
      }
      return ''
    }
    const hook = hooks.payload ?? hooks[command.text]
    const r = hook === undefined ? store() : typeof hook === 'function' ? hook(store) : hook
    if (r instanceof Error) throw r
    return command.parse(r)
  }
  return { runtime, payloads, live: () => live.map(e => `${e.key} ${e.value}`), versions: () => ({ current, next }), hooks }
}
