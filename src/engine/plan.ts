/**
 * A write is a plan: a target, an action, and steps that each know how to put back what they change.
 * Planners (src/resources/*) read what they need and return plans; the executor (./executor.ts) runs
 * them. A planner never rolls back, locks or maps errors to HTTP: that is written once, there.
 */
import type { Runtime } from '../runtime/client.ts'
import type { Command } from '../runtime/commands/index.ts'
import type { DesiredChange } from './store/types.ts'
import type { OperationError } from './outcomes.ts'

/** A command as a dry run shows it: its exact text, and a payload summarised (a map file is MBs). */
export type PreviewCommand = {
  readonly text: string
  readonly payload?: { readonly lines: number, readonly bytes: number, readonly firstLine: string } | undefined
}

/** What a plan acts on; `kind` names the resource (backend, server, map, …), `id` the object. */
export type Target = { readonly kind: string, readonly id: string }

/** What a step gets to act with. Later: the HAProxy node it runs on. */
export type StepContext = {
  readonly runtime: Runtime
  /**
   * Aborted when hapctl shuts down while the operation can still be put back: a step that waits (a
   * drain, a health check) gives up with the signal's reason and the executor undoes what came before.
   * The runtime given ends its `wait` commands by itself; a step that polls checks the signal. Absent
   * while undoing: putting back is never cut short.
   */
  readonly signal?: AbortSignal | undefined
}

/**
 * One change. Either `commands` (sent as they are; consecutive command steps of a plan go out on one
 * connection, one reply at a time, stopping at the first refusal) or `apply` (a function, for steps
 * that read replies or have their own logic, such as a versioned map load). The same for undo.
 */
export type Step = {
  /** The Runtime API command(s) it sends, for logs and for the outcome (`add server`, `publish backend`). */
  readonly label: string
  readonly commands?: ReadonlyArray<Command<unknown>> | undefined
  readonly apply?: ((ctx: StepContext) => Promise<void>) | undefined
  /**
   * With `commands`: called with their results once the batch they went out in succeeded (to record
   * what a reply says, such as the process `show info` names). A throw fails the step; it counts as
   * applied, so it is undone with the rest.
   */
  readonly onApplied?: ((results: readonly unknown[]) => Promise<void> | void) | undefined
  /** Called when the step got no verdict (it may have been applied): to note what may now exist. */
  readonly onInDoubt?: (() => Promise<void>) | undefined
  /**
   * With `apply`: the commands it sends that can change HAProxy, in order, for a dry run (reads are
   * not listed). Command steps need none: their `commands` say it.
   */
  readonly preview?: ReadonlyArray<PreviewCommand> | undefined
  /** Puts back what it changed; absent when nothing can (a deleted server is gone). */
  readonly undoCommands?: ReadonlyArray<Command<unknown>> | undefined
  readonly undo?: ((ctx: StepContext) => Promise<void>) | undefined
  /** Says what this step's failure means for the caller (`add server` refused as a duplicate → SERVER_EXISTS). */
  readonly explain?: ((err: OperationError) => OperationError | undefined) | undefined
  /**
   * With `apply`: the step only reads or waits (polls `show stat` for a server UP). A timeout in it
   * then leaves nothing in doubt: the executor undoes what came before instead of recording the
   * change for the reconciler.
   */
  readonly changesNothing?: boolean | undefined
}

export type Plan = {
  readonly target: Target
  readonly action: string
  readonly steps: readonly Step[]
  /**
   * The desired-state change this plan makes, committed to the store once every step applied, or
   * when a step got no verdict (then the reconciler settles it). Absent for plans that only bring
   * HAProxy in line with the store (the reconciler's) and for objects hapctl does not keep.
   */
  readonly changes?: readonly DesiredChange[] | undefined
}

/** A step that sends `commands`; `undo` are the commands that put back what they change ([] = nothing to put back). */
export function commandStep (commands: ReadonlyArray<Command<unknown>>, undo?: ReadonlyArray<Command<unknown>>, extra: { label?: string, explain?: Step['explain'] } = {}): Step {
  return { label: extra.label ?? commands.map(c => c.verb).join(' + '), commands, undoCommands: undo, explain: extra.explain }
}

/** The commands a step sends that can change HAProxy (`show …` reads left out), as a dry run lists them. */
export function previewOf (step: Step): PreviewCommand[] {
  if (step.apply !== undefined) return [...(step.preview ?? [])]
  return (step.commands ?? []).filter(c => !c.verb.startsWith('show ')).map(c => ({ text: c.text }))
}
