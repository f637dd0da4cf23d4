/**
 * The plan that makes HAProxy hold a whole state document, worked out from what HAProxy holds now
 * (not from what the store says it should: a dry run shows the commands HAProxy really needs), in
 * dependency order, one step list the executor runs in that order:
 *
 *   1. backends to create, each with its servers, published last (`add backend`, `add server`, …);
 *   2. changes to existing backends and to servers of the configuration: servers added, address,
 *      weight, checks and admin state set, backends published;
 *   3. maps, each replaced atomically by a versioned load (`prepare map`, `add map @N … <<`,
 *      `commit map`) when its content differs: an entry can only point at a backend that exists;
 *   4. what goes away, once no map points at it any more: backends unpublished, servers drained and
 *      deleted (`set server … state maint`, `wait srv-removable`, `del server`), servers whose add-time
 *      options changed deleted and added again, backends deleted (`wait be-removable`, `del backend`).
 *
 * Every step of 1–3 can be put back; a deletion cannot, so they come last. The store change is the
 * difference between what the store keeps and the document, committed by the executor in one
 * transaction once every step applied.
 * @see https://docs.haproxy.org/3.4/management.html#9.3
 */
import * as cmd from '../../runtime/commands/index.ts'
import type { Row } from '../../runtime/parsers.ts'
import type { Executor } from '../../engine/executor.ts'
import type { ProcessIdentity } from '../../engine/identity.ts'
import { processIdOf } from '../../engine/identity.ts'
import type { PreviewCommand, Step } from '../../engine/plan.ts'
import { commandStep } from '../../engine/plan.ts'
import type { Actual, ActualBackend } from '../../engine/reconciler.ts'
import type { DesiredBackend, DesiredChange, DesiredMap, DesiredServer, DesiredState, StaticServerSettings } from '../../engine/store/types.ts'
import { addServerSteps } from '../servers/service.ts'
import { checkStateOf, cliAdminStateOf } from '../servers/view.ts'
import { createBackendSteps, deleteBackend } from '../backends/service.ts'
import type { CreatedBackend } from '../backends/view.ts'
import { loadContent, sameEntries } from '../pattern-refs/versioned-load.ts'
import type { MapEntry } from '../pattern-refs/versioned-load.ts'
import type { TargetState } from './document.ts'
import { documentServer } from './document.ts'

export type DiffItem = { object: string, change: 'add' | 'change' | 'remove', desired?: unknown, actual?: unknown }

/** Why a document cannot be applied: where in it, and what is wrong. */
export type PlanProblem = { field: string, message: string }

export type StatePlan = {
  readonly diff: DiffItem[]
  readonly steps: Step[]
  readonly changes: DesiredChange[]
  readonly problems: PlanProblem[]
  /** What looks like a mistake but can be applied. */
  readonly warnings: string[]
  /** Every object the plan touches, as executor lock keys. */
  readonly locks: string[]
}

export type PlanDeps = { executor: Executor, identity: ProcessIdentity, created: Map<string, CreatedBackend> }

export type PlanInput = {
  readonly target: TargetState
  /** What the store keeps now. */
  readonly current: DesiredState
  readonly actual: Actual
  /** The live content of each map of the document that HAProxy has. */
  readonly liveMaps: ReadonlyMap<string, readonly MapEntry[]>
  /** Where hapctl created each backend it remembers (DesiredStateStore.createdIn). */
  readonly createdIn: ReadonlyMap<string, string>
  /** How long each removed server may take to lose its connections. */
  readonly drainMs: number
}

/** Add-time options of a server that `set server` cannot change: a change means deleting and adding it again. */
function fixedPart (s: DesiredServer): string {
  const { address: _a, port: _p, weight: _w, ...rest } = s.spec
  return JSON.stringify(rest)
}

function same (a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b)
}

/**
 * A server as a document describes it: the weight it should have now in `spec` (a PATCH after the
 * add keeps it apart in `weight`), so that the store's form and the document's compare equal.
 */
function asDocumented (s: DesiredServer): DesiredServer {
  if (s.weight === null) return s
  return { ...s, spec: { ...s.spec, weight: s.weight }, weight: null }
}

/** Whether the store keeps `s` as the document has it. */
function keptAs (kept: DesiredServer | undefined, s: DesiredServer): boolean {
  return kept !== undefined && same(asDocumented(kept), s)
}

/** What `show servers state` says of a server, as the diff shows it. */
function actualServer (row: Row): Record<string, unknown> {
  return {
    address: row.srv_addr,
    port: Number(row.srv_port),
    weight: Number(row.srv_uweight),
    state: cliAdminStateOf(row)
  }
}

/** Labels name the object, so that the step outcomes of an apply say what each one was about. */
function about (object: string, steps: Step[]): Step[] {
  return steps.map(s => s.label.includes(': ') ? s : { ...s, label: `${object}: ${s.label}` })
}

/**
 * `set server` commands that bring a server from `row` to `s` (address, weight, checks, admin
 * state), each undone by the command that sets what `row` says.
 */
function serverFixes (s: DesiredServer, row: Row): Step[] {
  const { backend, name } = s
  const steps: Step[] = []
  if (row.srv_addr !== s.spec.address || Number(row.srv_port) !== s.spec.port) {
    steps.push(commandStep([cmd.setServerAddr(backend, name, s.spec.address, s.spec.port)], [cmd.setServerAddr(backend, name, row.srv_addr as string, Number(row.srv_port))]))
  }
  const weight = s.weight ?? s.spec.weight ?? 1
  if (Number(row.srv_uweight) !== weight) {
    steps.push(commandStep([cmd.setServerWeight(backend, name, weight)], [cmd.setServerWeight(backend, name, Number(row.srv_uweight))]))
  }
  const health = checkStateOf(row.srv_check_state)
  const healthOn = s.healthChecks ?? s.spec.check
  if (health.configured && health.enabled !== healthOn) {
    steps.push(healthOn
      ? commandStep([cmd.enableHealth(backend, name)], [cmd.disableHealth(backend, name)])
      : commandStep([cmd.disableHealth(backend, name)], [cmd.enableHealth(backend, name)]))
  }
  const agent = checkStateOf(row.srv_agent_state)
  if (s.agentChecks !== null && agent.configured && agent.enabled !== s.agentChecks) {
    steps.push(s.agentChecks
      ? commandStep([cmd.enableAgent(backend, name)], [cmd.disableAgent(backend, name)])
      : commandStep([cmd.disableAgent(backend, name)], [cmd.enableAgent(backend, name)]))
  }
  const admin = cliAdminStateOf(row)
  if (admin !== s.adminState) steps.push(commandStep([cmd.setServerState(backend, name, s.adminState)], [cmd.setServerState(backend, name, admin)]))
  return steps
}

/**
 * Takes a server out of traffic (agent off, maintenance: both put back on failure) and waits until it
 * can be removed; `del server` is separate (removals), as it cannot be undone.
 */
function drainSteps (backend: string, name: string, row: Row, drainMs: number): Step[] {
  const steps: Step[] = []
  if (checkStateOf(row.srv_agent_state).enabled) steps.push(commandStep([cmd.disableAgent(backend, name)], [cmd.enableAgent(backend, name)]))
  const admin = cliAdminStateOf(row)
  if (admin !== 'maint') steps.push(commandStep([cmd.setServerState(backend, name, 'maint')], [cmd.setServerState(backend, name, admin)]))
  steps.push(commandStep([cmd.waitServerRemovable(backend, name, drainMs)], []))
  return steps
}

function summaryOfBackend (b: DesiredBackend, servers: number): Record<string, unknown> {
  return { from: b.from, ...(b.mode === null ? {} : { mode: b.mode }), published: b.published, servers }
}

/** The payloads of a map load as a dry run shows them. */
function mapLoadPreview (map: string, version: number, entries: readonly MapEntry[]): PreviewCommand[] {
  const payloads = cmd.addMapPayloads(map, version, entries).map(p => {
    const lines = p.payload.split('\n').length - 1
    return { text: p.text, payload: { lines, bytes: Buffer.byteLength(p.payload), firstLine: p.payload.slice(0, p.payload.indexOf('\n')) } }
  })
  return [{ text: cmd.prepareMap(map).text }, ...payloads, { text: cmd.commitMap(map, version).text }]
}

export function planState (input: PlanInput, deps: PlanDeps): StatePlan {
  const { target, current, actual, liveMaps, createdIn, drainMs } = input
  const here = processIdOf(actual.info)
  const diff: DiffItem[] = []
  const problems: PlanProblem[] = []
  const changes: DesiredChange[] = []
  const locks = new Set<string>()
  const create: Step[] = []
  const update: Step[] = []
  const maps: Step[] = []
  const unpublish: Step[] = []
  const drain: Step[] = []
  const removals: Step[] = []
  const readd: Step[] = []

  const keptBackends = new Map(current.backends.map(b => [b.name, b]))
  const targetBackends = new Map(target.backends.map(b => [b.name, b]))
  const keptServers = new Map(current.servers.map(s => [`${s.backend}/${s.name}`, s]))
  const targetServers = new Map(target.servers.map(s => [`${s.backend}/${s.name}`, s]))
  const serversOf = (list: readonly DesiredServer[], backend: string): DesiredServer[] => list.filter(s => s.backend === backend)
  /** Backends hapctl made in the process answering now (its own, whatever the store says). */
  const ours = (name: string): boolean => createdIn.get(name) === here

  for (const name of target.listedTwice) {
    problems.push({ field: `body.configBackends.${name}`, message: `'${name}' is under backends too: a backend is either hapctl's (backends) or the configuration's (configBackends)` })
  }

  // --- backends hapctl creates ------------------------------------------------------------------
  for (const b of target.backends) {
    locks.add(`backend:${b.name}`)
    const servers = serversOf(target.servers, b.name)
    const a = actual.backends.get(b.name)
    const kept = keptBackends.get(b.name)
    if (kept === undefined || !same(kept, b)) changes.push({ op: 'backend.put', backend: b })
    if (a === undefined) {
      diff.push({ object: `backend/${b.name}`, change: 'add', desired: summaryOfBackend(b, servers.length) })
      create.push(...about(`backend/${b.name}`, createBackendSteps(b, deps, servers.flatMap(s => about(`server/${b.name}/${s.name}`, addServerSteps(s))))))
      for (const s of servers) if (!keptAs(keptServers.get(`${s.backend}/${s.name}`), s)) changes.push({ op: 'server.put', server: s })
      continue
    }
    if (!ours(b.name)) {
      problems.push({ field: `body.backends.${b.name}`, message: `HAProxy already has a backend '${b.name}' that hapctl did not create (its configuration defines it): list its servers under configBackends instead` })
      continue
    }
    if (kept !== undefined && (kept.from !== b.from || kept.mode !== b.mode)) {
      problems.push({ field: `body.backends.${b.name}`, message: `backend '${b.name}' was created from '${kept.from}'${kept.mode === null ? '' : ` (mode ${kept.mode})`}: a backend cannot change its defaults or mode at runtime; remove it in one document and add it in the next` })
      continue
    }
    const before = diff.length
    updateServers(b.name, a, servers, true)
    if (b.published && !a.published) update.push(...about(`backend/${b.name}`, [commandStep([cmd.publishBackend(b.name)], [cmd.unpublishBackend(b.name)])]))
    if (!b.published && a.published) unpublish.push(...about(`backend/${b.name}`, [commandStep([cmd.unpublishBackend(b.name)], [cmd.publishBackend(b.name)])]))
    if (b.published !== a.published || diff.length > before) {
      diff.splice(before, 0, { object: `backend/${b.name}`, change: 'change', desired: summaryOfBackend(b, servers.length), actual: { published: a.published, servers: a.servers.size } })
    }
  }

  // --- backends of HAProxy's configuration --------------------------------------------------------
  const configNames = new Set([...target.servers.filter(s => !targetBackends.has(s.backend)).map(s => s.backend), ...target.staticServers.map(s => s.backend)])
  for (const name of configNames) {
    locks.add(`backend:${name}`)
    const a = actual.backends.get(name)
    if (a === undefined) { problems.push({ field: `body.configBackends.${name}`, message: `HAProxy has no backend '${name}'` }); continue }
    if (ours(name) || keptBackends.has(name)) { problems.push({ field: `body.configBackends.${name}`, message: `'${name}' is a backend hapctl created: list it under backends` }); continue }
    updateServers(name, a, serversOf(target.servers, name), false)
  }
  for (const s of target.staticServers) {
    const row = actual.backends.get(s.backend)?.servers.get(s.name)
    const dynamic = targetServers.has(`${s.backend}/${s.name}`) || keptServers.has(`${s.backend}/${s.name}`)
    if (row === undefined || dynamic) {
      problems.push({ field: `body.configBackends.${s.backend}.serverSettings.${s.name}`, message: row === undefined ? `backend '${s.backend}' has no server '${s.name}'` : `'${s.backend}/${s.name}' is a server hapctl adds: set its state and weight under servers` })
      continue
    }
    const kept = current.staticServers.find(k => k.backend === s.backend && k.name === s.name)
    if (kept === undefined || !same(kept, s)) changes.push({ op: 'staticServer.put', settings: s })
    const steps = staticFixes(s, row)
    if (steps.length > 0) {
      diff.push({ object: `server-settings/${s.backend}/${s.name}`, change: 'change', desired: { state: s.adminState ?? undefined, weight: s.weight ?? undefined }, actual: actualServer(row) })
      update.push(...about(`server/${s.backend}/${s.name}`, steps))
    }
  }
  // Settings no longer kept: HAProxy keeps what it has, the store forgets them.
  for (const s of current.staticServers) {
    if (!target.staticServers.some(t => t.backend === s.backend && t.name === s.name)) changes.push({ op: 'staticServer.delete', backend: s.backend, name: s.name })
  }
  // Servers hapctl added to backends of the configuration that the document no longer has.
  for (const s of current.servers) {
    if (keptBackends.has(s.backend) || targetBackends.has(s.backend) || targetServers.has(`${s.backend}/${s.name}`)) continue
    locks.add(`backend:${s.backend}`)
    changes.push({ op: 'server.delete', backend: s.backend, name: s.name })
    const row = actual.backends.get(s.backend)?.servers.get(s.name)
    if (row === undefined) continue
    diff.push({ object: `server/${s.backend}/${s.name}`, change: 'remove', actual: actualServer(row) })
    removeServer(s.backend, s.name, row)
  }

  // --- maps ---------------------------------------------------------------------------------------
  for (const m of target.maps) {
    locks.add(`map:${m.name}`)
    const info = actual.maps.get(m.name)
    const live = liveMaps.get(m.name)
    if (info === undefined || live === undefined) {
      problems.push({ field: `body.maps.${m.name}`, message: `HAProxy has no map '${m.name}' (maps cannot be created at runtime: a virt@ map must appear in the configuration)` })
      continue
    }
    const twice = firstDuplicate(m.entries)
    if (twice !== undefined) {
      problems.push({ field: `body.maps.${m.name}.entries.${twice}.key`, message: `duplicate key '${m.entries[twice]?.key}': a second entry with a key could never be looked up` })
      continue
    }
    const kept = current.maps.find(k => k.name === m.name)
    if (kept === undefined || !sameEntries(kept.entries, m.entries)) changes.push({ op: 'map.replace', name: m.name, entries: m.entries })
    if (sameEntries(live, m.entries)) continue
    diff.push({ object: `map/${m.name}`, change: 'change', desired: { entries: m.entries.length }, actual: { entries: live.length, ...entryChanges(live, m.entries) } })
    maps.push(mapStep(m, live, (info.nextVersion ?? 0) + 1))
  }
  for (const m of current.maps) {
    if (!target.maps.some(t => t.name === m.name)) changes.push({ op: 'map.forget', name: m.name })
  }

  // --- backends that go away ----------------------------------------------------------------------
  for (const b of current.backends) {
    if (targetBackends.has(b.name)) continue
    locks.add(`backend:${b.name}`)
    changes.push({ op: 'backend.delete', name: b.name })
  }
  for (const [name, a] of actual.backends) {
    if (targetBackends.has(name) || !(ours(name) || keptBackends.has(name))) continue
    if (!ours(name)) continue // kept, but HAProxy's configuration now defines it: the reconciler reports that, nothing to delete
    locks.add(`backend:${name}`)
    const kept = keptBackends.get(name)
    diff.push({ object: `backend/${name}`, change: 'remove', actual: { ...(kept === undefined ? {} : { from: kept.from }), published: a.published, servers: a.servers.size } })
    removeBackend(name, a)
  }

  // A map entry left pointing at a backend this document removes sends its requests elsewhere (the
  // frontend's next rule) once it is gone: almost always a mistake, said but not refused.
  const warnings: string[] = []
  const removed = new Set(diff.filter(d => d.change === 'remove' && d.object.startsWith('backend/')).map(d => d.object.slice('backend/'.length)))
  if (removed.size > 0) {
    for (const m of target.maps) {
      const dangling = m.entries.filter(e => removed.has(e.value))
      if (dangling.length > 0) warnings.push(`map '${m.name}' keeps ${dangling.length} entr${dangling.length === 1 ? 'y' : 'ies'} pointing at backend(s) this document removes (first: ${dangling[0]?.key} → ${dangling[0]?.value})`)
    }
  }
  const steps = [...create, ...update, ...maps, ...unpublish, ...drain, ...removals, ...readd]
  return { diff, steps: uniqueLabels(steps), changes, problems, warnings, locks: [...locks] }

  function updateServers (backend: string, a: ActualBackend, wanted: DesiredServer[], owned: boolean): void {
    const names = new Set(wanted.map(s => s.name))
    for (const s of wanted) {
      const key = `${s.backend}/${s.name}`
      const kept = keptServers.get(key)
      if (!keptAs(kept, s)) changes.push({ op: 'server.put', server: s })
      const row = a.servers.get(s.name)
      const object = `server/${backend}/${s.name}`
      if (row === undefined) {
        diff.push({ object, change: 'add', desired: documentServer(s) })
        update.push(...about(object, addServerSteps(s)))
        continue
      }
      if (!owned && kept === undefined) {
        problems.push({ field: `body.configBackends.${backend}.servers.${s.name}`, message: `backend '${backend}' already has a server '${s.name}' (from HAProxy's configuration): use serverSettings for it` })
        continue
      }
      if (kept !== undefined && fixedPart(kept) !== fixedPart(s)) {
        // Options `add server` took and `set server` cannot change: the server is added again.
        diff.push({ object, change: 'change', desired: documentServer(s), actual: { ...documentServer(kept), ...actualServer(row) } })
        removeServer(backend, s.name, row)
        readd.push(...about(object, addServerSteps(s)))
        continue
      }
      const fixes = serverFixes(s, row)
      if (fixes.length === 0) continue
      diff.push({ object, change: 'change', desired: documentServer(s), actual: actualServer(row) })
      update.push(...about(object, fixes))
    }
    if (!owned) return
    for (const [name, row] of a.servers) {
      if (names.has(name)) continue
      diff.push({ object: `server/${backend}/${name}`, change: 'remove', actual: actualServer(row) })
      removeServer(backend, name, row)
      if (keptServers.has(`${backend}/${name}`)) changes.push({ op: 'server.delete', backend, name })
    }
  }

  function removeServer (backend: string, name: string, row: Row): void {
    const object = `server/${backend}/${name}`
    drain.push(...about(object, drainSteps(backend, name, row, drainMs)))
    removals.push(...about(object, [commandStep([cmd.delServer(backend, name)])]))
  }

  function removeBackend (name: string, a: ActualBackend): void {
    const object = `backend/${name}`
    if (a.published) unpublish.push(...about(object, [commandStep([cmd.unpublishBackend(name)], [cmd.publishBackend(name)])]))
    for (const [server, row] of a.servers) removeServer(name, server, row)
    const wait = cmd.waitBackendRemovable(name, drainMs)
    removals.push(...about(object, [{
      label: 'del backend',
      preview: [{ text: wait.text }, { text: cmd.delBackend(name).text }],
      apply: async ({ runtime }) => {
        await deleteBackend(runtime, name, wait)
        deps.created.delete(name)
        await deps.executor.store.setCreatedIn(name, undefined)
      }
    }]))
  }
}

/** Settings of a configuration's server: weight and admin state, each put back on failure. */
function staticFixes (s: StaticServerSettings, row: Row): Step[] {
  const steps: Step[] = []
  if (s.weight !== null && Number(row.srv_uweight) !== s.weight) {
    steps.push(commandStep([cmd.setServerWeight(s.backend, s.name, s.weight)], [cmd.setServerWeight(s.backend, s.name, Number(row.srv_uweight))]))
  }
  const admin = cliAdminStateOf(row)
  if (s.adminState !== null && admin !== s.adminState) {
    steps.push(commandStep([cmd.setServerState(s.backend, s.name, s.adminState)], [cmd.setServerState(s.backend, s.name, admin)]))
  }
  return steps
}

/** The index of the first entry whose key came before, if any. */
function firstDuplicate (entries: readonly MapEntry[]): number | undefined {
  const seen = new Set<string>()
  for (const [i, e] of entries.entries()) {
    if (seen.has(e.key)) return i
    seen.add(e.key)
  }
  return undefined
}

/** How many entries a map load adds, changes and removes (for the diff). */
function entryChanges (live: readonly MapEntry[], wanted: readonly MapEntry[]): { added: number, changed: number, removed: number } {
  const before = new Map<string, string>()
  for (const e of live) if (!before.has(e.key)) before.set(e.key, e.value)
  const after = new Map<string, string>()
  for (const e of wanted) if (!after.has(e.key)) after.set(e.key, e.value)
  let added = 0
  let changed = 0
  for (const [k, v] of after) {
    const old = before.get(k)
    if (old === undefined) added++
    else if (old !== v) changed++
  }
  let removed = 0
  for (const k of before.keys()) if (!after.has(k)) removed++
  return { added, changed, removed }
}

/** The versioned load of one map; undone by loading back what it held. */
function mapStep (m: DesiredMap, live: readonly MapEntry[], version: number): Step {
  return {
    label: `map/${m.name}: prepare map + add map @N + commit map`,
    preview: mapLoadPreview(m.name, version, m.entries),
    apply: async ({ runtime }) => loadContent(runtime, m.name, m.entries),
    undo: async ({ runtime }) => loadContent(runtime, m.name, live)
  }
}

/** Step labels made unique (the executor reports outcomes by label). */
function uniqueLabels (steps: Step[]): Step[] {
  const seen = new Map<string, number>()
  return steps.map(s => {
    const n = (seen.get(s.label) ?? 0) + 1
    seen.set(s.label, n)
    return n === 1 ? s : { ...s, label: `${s.label} (${n})` }
  })
}
