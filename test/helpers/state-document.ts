/**
 * What the /state tests share: a state document with the API's defaults filled in (to compare what
 * GET answers with what was PUT), and the two sides of "a dry run lists what its apply sends" in one
 * shape.
 */
import { PROBE_PREFIX } from '../../src/schemas/state.ts'
import { changingCommands } from './runtime-capture.ts'
import type { CapturedCommand } from './runtime-capture.ts'

type Obj = Record<string, any>

const server = (spec: Obj): Obj => ({ check: false, state: 'ready', ...spec })
const servers = (list: Obj | undefined): Obj => Object.fromEntries(Object.entries((list ?? {}) as Record<string, Obj>).map(([name, spec]) => [name, server(spec)]))

/** `doc` with what the API fills in when it is left out (published, check, state, empty sections), without its revision. */
export function withDefaults (doc: Obj): Obj {
  const backends = Object.fromEntries(Object.entries((doc.backends ?? {}) as Record<string, Obj>).map(([name, b]: [string, Obj]) => [name, { published: true, ...b, servers: servers(b.servers) }]))
  const configBackends = Object.fromEntries(Object.entries((doc.configBackends ?? {}) as Record<string, Obj>).map(([name, c]: [string, Obj]) => [name, { servers: servers(c.servers), serverSettings: c.serverSettings ?? {} }]))
  return { backends, configBackends, maps: doc.maps ?? {} }
}

/** A map version is only known once `prepare map` answers: `@<anything>` becomes `@V` on both sides. */
const normalize = (text: string): string => text.replace(/^((?:add|commit|clear) map) @\S+ /, '$1 @V ')

export type ComparableCommand = { text: string, payloadLines: number | undefined }

/** A dry run's (or an apply's) `commands`, payloads by their line count. */
export function planned (commands: ReadonlyArray<{ text: string, payload?: { lines: number } | undefined }>): ComparableCommand[] {
  return commands.map(c => ({ text: normalize(c.text), payloadLines: c.payload?.lines }))
}

/** What went over the wire that can change HAProxy, in the same shape. */
export function sent (commands: readonly CapturedCommand[]): ComparableCommand[] {
  return changingCommands(commands).map(c => ({ text: normalize(c.text), payloadLines: c.payloadLines }))
}

/**
 * What could have changed HAProxy beyond hapctl's probe backends (`hapctl-probe-<n>`, created and
 * deleted again to ask HAProxy whether it takes a document's defaults sections and server options):
 * what a dry run or a refused document may send.
 */
export function changesBeyondProbes (commands: readonly CapturedCommand[]): string[] {
  return changingCommands(commands).filter(c => !c.text.includes(PROBE_PREFIX)).map(c => c.text)
}
