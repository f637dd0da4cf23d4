/**
 * The state document (src/schemas/state.ts) and the desired state the store keeps
 * (src/engine/store/types.ts), each turned into the other. A server's weight in the document is the
 * one it should have now, whether `add server` set it or a later PATCH did.
 */
import type { DesiredBackend, DesiredMap, DesiredServer, DesiredState, ServerSpec, StaticServerSettings } from '../../engine/store/types.ts'
import type { StateDocument, StateServer } from '../../schemas/state.ts'
import { durationMs, durationText } from '../../schemas/state.ts'

/** What a document asks for, as the store would keep it. */
export type TargetState = {
  readonly backends: DesiredBackend[]
  /** Servers of hapctl's backends and servers hapctl adds to backends of the configuration. */
  readonly servers: DesiredServer[]
  readonly staticServers: StaticServerSettings[]
  readonly maps: DesiredMap[]
  /** Names listed both under backends and under configBackends (a document the planner refuses). */
  readonly listedTwice: string[]
}

/** `spec` without the keys whose value is undefined, so that two equal specs compare equal as JSON. */
function compact<T extends object> (o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T
}

export function serverOf (backend: string, name: string, s: StateServer): DesiredServer {
  const spec: ServerSpec = compact({
    address: s.address,
    port: s.port,
    check: s.check,
    checkPort: s.checkPort,
    checkAddr: s.checkAddr,
    inter: s.inter === undefined ? undefined : durationMs(s.inter),
    rise: s.rise,
    fall: s.fall,
    weight: s.weight,
    maxconn: s.maxconn,
    backup: s.backup,
    ssl: s.ssl,
    sslVerify: s.sslVerify,
    sni: s.sni
  })
  return { backend, name, spec, adminState: s.state, weight: null, healthChecks: s.healthChecks ?? null, agentChecks: s.agentChecks ?? null }
}

export function targetOf (doc: StateDocument): TargetState {
  const backends: DesiredBackend[] = []
  const servers: DesiredServer[] = []
  const staticServers: StaticServerSettings[] = []
  for (const [name, b] of Object.entries(doc.backends)) {
    backends.push({ name, from: b.from, mode: b.mode ?? null, published: b.published })
    for (const [s, spec] of Object.entries(b.servers as Record<string, StateServer>)) servers.push(serverOf(name, s, spec))
  }
  for (const [name, c] of Object.entries(doc.configBackends)) {
    for (const [s, spec] of Object.entries(c.servers as Record<string, StateServer>)) servers.push(serverOf(name, s, spec))
    for (const [s, settings] of Object.entries(c.serverSettings)) {
      staticServers.push({ backend: name, name: s, adminState: settings.state ?? null, weight: settings.weight ?? null })
    }
  }
  const maps = Object.entries(doc.maps).map(([name, m]) => ({ name, entries: m.entries }))
  const listedTwice = Object.keys(doc.configBackends).filter(name => Object.hasOwn(doc.backends, name))
  return { backends, servers, staticServers, maps, listedTwice }
}

/** A kept server as the document shows it. */
export function documentServer (s: DesiredServer): Record<string, unknown> {
  const { inter, weight, ...spec } = s.spec
  return compact({
    ...spec,
    inter: inter === undefined ? undefined : durationText(inter),
    weight: s.weight ?? weight,
    state: s.adminState,
    healthChecks: s.healthChecks ?? undefined,
    agentChecks: s.agentChecks ?? undefined
  })
}

/**
 * The document of what the store keeps (GET /state). Built in Maps: a backend may be named
 * `constructor` or `toString`, which a plain object would already "have".
 */
export function documentOf (state: DesiredState): Record<string, unknown> {
  type Owned = { from: string, mode?: string, published: boolean, servers: Map<string, unknown> }
  type Config = { servers: Map<string, unknown>, serverSettings: Map<string, unknown> }
  const backends = new Map<string, Owned>()
  for (const b of state.backends) backends.set(b.name, compact({ from: b.from, mode: b.mode ?? undefined, published: b.published, servers: new Map() }))
  const configBackends = new Map<string, Config>()
  const config = (name: string): Config => {
    let c = configBackends.get(name)
    if (c === undefined) configBackends.set(name, c = { servers: new Map(), serverSettings: new Map() })
    return c
  }
  for (const s of state.servers) (backends.get(s.backend)?.servers ?? config(s.backend).servers).set(s.name, documentServer(s))
  for (const s of state.staticServers) {
    config(s.backend).serverSettings.set(s.name, compact({ state: s.adminState ?? undefined, weight: s.weight ?? undefined }))
  }
  const object = <V, R>(m: Map<string, V>, f: (v: V) => R): Record<string, R> => Object.fromEntries([...m].map(([k, v]) => [k, f(v)]))
  return {
    revision: state.revision,
    backends: object(backends, b => ({ ...b, servers: object(b.servers, x => x) })),
    configBackends: object(configBackends, c => ({ servers: object(c.servers, x => x), serverSettings: object(c.serverSettings, x => x) })),
    maps: Object.fromEntries(state.maps.map(m => [m.name, { entries: m.entries.map(e => ({ key: e.key, value: e.value })) }]))
  }
}
