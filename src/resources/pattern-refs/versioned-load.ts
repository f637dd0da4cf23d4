/**
 * The versioned load: how a whole pattern reference (a map now, an ACL later) is replaced so that
 * lookups see the old content or the new one, never a mix (management §9.3 `prepare map`, `add map`
 * with a payload, `commit map`, `clear map`):
 *
 *   prepare → `add @N <ref> <<` payloads → count `@N` → commit @N
 *
 * - each payload is at most 16000 bytes and goes on its own non-interactive connection: HAProxy 3.4.7
 *   cuts a payload whose line ends at a 16 KiB boundary of the connection's input, answers success,
 *   and on an interactive connection runs the rest as commands;
 * - the prepared version is counted before the commit, so a silently shortened payload is never made
 *   live;
 * - any failure after prepare clears version N and counts it again: 3.4.7 answers `clear map @N` with
 *   success but keeps the entries once the map has had a commit (they stay invisible to lookups and go
 *   with the next commit), so the error's `state` says whether the version really is empty;
 * - a commit whose answer is lost is checked against `curr_ver`, never cleared blindly: clearing the
 *   version that just went live empties the live map.
 *
 * Versions are global per reference and shared by every CLI client: callers serialize writers of one
 * reference (the executor's `map:<name>` lock); hapctl cannot stop other CLI users.
 * @see https://docs.haproxy.org/3.4/management.html#9.3
 */
import type { PayloadCommand, Runtime } from '../../runtime/client.ts'
import * as cmd from '../../runtime/commands/index.ts'
import type { Command, MapEntry } from '../../runtime/commands/index.ts'
import type { RuntimeCommandError } from '../../runtime/errors.ts'
import type { Step } from '../../engine/plan.ts'
import { OperationError, isVerdictless, rejectionOf, toOperationError } from '../../engine/outcomes.ts'
import type { Reason } from '../../engine/outcomes.ts'

export type { MapEntry }

/** Whether two contents are the same entries in the same order (order decides first-match lookups). */
export function sameEntries (a: readonly MapEntry[], b: readonly MapEntry[]): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i]?.key !== b[i]?.key || a[i]?.value !== b[i]?.value) return false
  return true
}

/**
 * What the load needs from one kind of pattern reference: its commands and the reasons its failures
 * are reported with. MAP_REFERENCES is the one for maps; ACLs (`prepare acl`, `add acl @N <acl> <<`,
 * `commit acl`, `clear acl @N`, `show acl @N`) get their own when they are added.
 */
export type PatternRefKind<E> = {
  /** `map` or `acl`: in messages, and the key naming the reference in an error's `state`. */
  readonly noun: string
  readonly reasons: { readonly versionConflict: Reason, readonly loadIncomplete: Reason }
  /** The reference's 404, from HAProxy's refusal when there is one. */
  readonly notFound: (ref: string, r?: RuntimeCommandError) => OperationError
  /** `prepare <noun> <ref>` → the new version. */
  readonly prepare: (ref: string) => Command<number>
  /** `add <noun> @N <ref> <<` payload commands, each small enough to go alone on one connection. */
  readonly payloads: (ref: string, version: number, items: readonly E[]) => Array<PayloadCommand<void>>
  /** Entries of the current version, or of version N. */
  readonly count: (ref: string, version?: number) => Command<number>
  readonly commit: (ref: string, version: number) => Command<void>
  readonly clear: (ref: string, version: number) => Command<void>
  /** Every reference of this kind, with its id and live version. */
  readonly list: () => Command<Array<{ name: string, id: number, currentVersion: number | null }>>
  /** The current content. */
  readonly show: (ref: string) => Command<E[]>
  /** Whether HAProxy's refusal says the reference does not exist. */
  readonly isUnknown: (r: RuntimeCommandError) => boolean
}

/** The map's 404: maps cannot be created at runtime, so the usual cause is a name not in the configuration. */
export function mapNotFound (map: string, r?: RuntimeCommandError): OperationError {
  return new OperationError('MAP_NOT_FOUND',
    `HAProxy has no map '${map}' (maps cannot be created at runtime: a virt@ map must appear in the configuration; address a file map by its path as written there)`,
    r === undefined ? {} : { haproxyMessage: r.haproxyMessage, command: r.verb, cause: r })
}

export const MAP_REFERENCES: PatternRefKind<MapEntry> = {
  noun: 'map',
  reasons: { versionConflict: 'MAP_VERSION_CONFLICT', loadIncomplete: 'MAP_LOAD_INCOMPLETE' },
  notFound: mapNotFound,
  prepare: cmd.prepareMap,
  payloads: cmd.addMapPayloads,
  count: cmd.countMapEntries,
  commit: cmd.commitMap,
  clear: cmd.clearMapVersion,
  list: cmd.showMaps,
  show: map => cmd.showMapEntries(map),
  isUnknown: r => /^Unknown map identifier/.test(r.haproxyMessage)
}

/** The reference's 404 when `err` says HAProxy does not know it; undefined for any other failure. */
export function unknownReference<E> (kind: PatternRefKind<E>, ref: string, err: unknown): OperationError | undefined {
  const r = rejectionOf(err)
  return r?.kind === 'not_found' && kind.isUnknown(r) ? kind.notFound(ref, r) : undefined
}

/** `err` as the operation failure it is for this reference (an unknown reference is its 404). */
function explain<E> (kind: PatternRefKind<E>, ref: string, err: unknown): OperationError {
  return unknownReference(kind, ref, err) ?? toOperationError(err)
}

/**
 * A failure whose outcome is known (the live content did not change), with `state` added. A timeout
 * or a cut reply is kept as the reason and the message but not as the cause: the executor takes a
 * verdictless cause for "HAProxy may still apply this" and would record the change as desired.
 */
function settled (err: OperationError, state?: Record<string, unknown>): OperationError {
  return new OperationError(err.reason, err.message, {
    haproxyMessage: err.haproxyMessage,
    command: err.command,
    errors: err.errors,
    warnings: err.warnings,
    state: state === undefined ? err.state : { ...err.state, ...state },
    cause: isVerdictless(err) ? undefined : err.cause
  })
}

/**
 * Puts `items` in place of the reference's whole content, atomically for lookups. Resolves once the
 * new version is live. Throws an OperationError: MAP_NOT_FOUND, MAP_VERSION_CONFLICT (another client
 * prepared or committed meanwhile), MAP_LOAD_INCOMPLETE (HAProxy held fewer or more entries than sent),
 * NOT_IMPLEMENTED (a runtime without payloads), or the runtime failure, each with a `state` saying
 * whether the prepared version was cleared. Only when the commit's outcome cannot be told (its answer
 * was lost and `curr_ver` could not be read) is the error verdictless (its cause is the timeout or
 * protocol error): HAProxy may have made the new content live, or may still do so.
 */
export async function versionedLoad<E> (runtime: Runtime, kind: PatternRefKind<E>, ref: string, items: readonly E[]): Promise<void> {
  const staged = await stageVersion(runtime, kind, ref, items)
  await staged.commit()
}

/** A prepared version holding the new content, invisible to lookups until commit() makes it live. */
export type StagedVersion = {
  readonly version: number
  /** `commit @N`; on a failure, clears version N as versionedLoad does. */
  commit: () => Promise<void>
  /** Clears version N without committing it (the content stays as it was). */
  abandon: (why: unknown) => Promise<never>
}

/**
 * The part of the versioned load that lookups never see: prepare → payloads → count. The reconciler
 * stages a map's content while it still creates the backends the entries point at, and commits once
 * they exist, so the commit (the only visible step) keeps the dependency order.
 */
export async function stageVersion<E> (runtime: Runtime, kind: PatternRefKind<E>, ref: string, items: readonly E[]): Promise<StagedVersion> {
  if (runtime.executePayload === undefined) {
    throw new OperationError('NOT_IMPLEMENTED', `this runtime cannot send payload commands, which replacing a ${kind.noun}'s content needs`)
  }
  let version: number
  try {
    [version] = await runtime.execute([kind.prepare(ref)])
  } catch (err) {
    // A prepared version is invisible to lookups: whatever happened to it, the live content is unchanged.
    throw settled(explain(kind, ref, err))
  }
  try {
    for (const c of kind.payloads(ref, version, items)) await runtime.executePayload(c)
    const [count] = await runtime.execute([kind.count(ref, version)])
    if (count !== items.length) {
      throw new OperationError(kind.reasons.loadIncomplete,
        `HAProxy holds ${count} entries in the prepared version of ${kind.noun} '${ref}' instead of ${items.length}; nothing was committed`)
    }
  } catch (err) {
    return abandon(runtime, kind, ref, version, err)
  }
  const staged: StagedVersion = {
    version,
    abandon: async why => abandon(runtime, kind, ref, version, why),
    commit: async () => {
      try {
        await runtime.execute([kind.commit(ref, version)])
      } catch (err) {
        if (!isVerdictless(err)) return abandon(runtime, kind, ref, version, err)
        // The commit went out and no verdict came back: HAProxy may have applied it. Clearing version N
        // then would empty the live content, so ask which version is live.
        const live = await currentVersion(runtime, kind, ref)
        if (live !== undefined && live >= version) return
        if (live !== undefined) return abandon(runtime, kind, ref, version, err)
        throw toOperationError(err).extend({
          suffix: `; the live version of ${kind.noun} '${ref}' could not be read to tell whether the commit went through`,
          state: { [kind.noun]: ref, version, committed: 'unknown' }
        })
      }
    }
  }
  return staged
}

/** The live version (`curr_ver` in `show map`), or undefined when HAProxy cannot tell us now. */
async function currentVersion<E> (runtime: Runtime, kind: PatternRefKind<E>, ref: string): Promise<number | undefined> {
  try {
    const [refs] = await runtime.execute([kind.list()])
    return refs.find(m => m.name === ref || `#${m.id}` === ref)?.currentVersion ?? undefined
  } catch {
    return undefined
  }
}

/**
 * Clears the pending version N (it was not committed), reads back whether it is empty, and throws
 * `err` with what was left in `state`.
 */
async function abandon<E> (runtime: Runtime, kind: PatternRefKind<E>, ref: string, version: number, err: unknown): Promise<never> {
  let cleared = false
  try {
    const [, left] = await runtime.execute([kind.clear(ref, version), kind.count(ref, version)])
    cleared = left === 0
  } catch {
    cleared = false
  }
  const state = cleared
    ? { [kind.noun]: ref, version, committed: false, pendingVersionCleared: true }
    : {
        [kind.noun]: ref,
        version,
        committed: false,
        pendingVersionCleared: false,
        note: 'the prepared version still holds entries (invisible to lookups); the next successful replace of this ' + kind.noun + ' purges them'
      }
  const r = rejectionOf(err)
  if (r !== undefined && /Version number out of range/.test(r.haproxyMessage)) {
    throw new OperationError(kind.reasons.versionConflict,
      `another client prepared or committed a version of ${kind.noun} '${ref}' while this replace ran; nothing was changed, retry`,
      { haproxyMessage: r.haproxyMessage, command: r.verb, state, cause: r })
  }
  throw settled(explain(kind, ref, err), state)
}

/** The reconciler's first half of loadContent: stage the content, commit it later. */
export async function stageContent (runtime: Runtime, map: string, entries: readonly MapEntry[]): Promise<StagedVersion> {
  return stageVersion(runtime, MAP_REFERENCES, map, entries)
}

/** Replaces a map's whole content (see versionedLoad): for the map planners and the reconciler. */
export async function loadContent (runtime: Runtime, map: string, entries: readonly MapEntry[]): Promise<void> {
  return versionedLoad(runtime, MAP_REFERENCES, map, entries)
}

/** One read command about a reference, with an unknown reference as its 404. */
export async function readReference<E, T> (runtime: Runtime, kind: PatternRefKind<E>, ref: string, command: Command<T>): Promise<T> {
  try {
    const [result] = await runtime.execute([command])
    return result
  } catch (err) {
    throw explain(kind, ref, err)
  }
}

/** A map's current content, in HAProxy's order (`show map <map>`, management §9.3). */
export async function readContent (runtime: Runtime, map: string): Promise<MapEntry[]> {
  return await readReference(runtime, MAP_REFERENCES, map, MAP_REFERENCES.show(map))
}

/**
 * The versioned load as one step of a plan. `previous`, when given, is what undoing loads back (the
 * content the map had, to put back when the store refuses the change); without it the step cannot be
 * undone. Its clear-after-failure happens inside apply: a failed step leaves the live map unchanged.
 */
export function loadContentStep (map: string, entries: readonly MapEntry[], previous?: readonly MapEntry[]): Step {
  return {
    label: 'prepare map + add map @N + commit map',
    apply: async ctx => loadContent(ctx.runtime, map, entries),
    undo: previous === undefined ? undefined : async ctx => loadContent(ctx.runtime, map, previous)
  }
}
