/**
 * How the audit trail writes down the Runtime API commands a write sent: which are kept, how a
 * payload is summarised, how long a text may be, and which object a command acts on (for the
 * entries of the reconciler and of hapctl itself, which have no route to tell it).
 *
 * Reads (`show …`, `get …`) are not kept: they change nothing, and a write sends many of them
 * (state read before planning, read-back after applying), which would bury the commands that did
 * change HAProxy. `wait …` is kept: it is part of a removal and tells why it took its time.
 * @see https://docs.haproxy.org/3.4/management.html#9.3
 */
import type { AuditCommand, AuditCommandResult } from '../engine/store/types.ts'

/** At most this many commands per entry; the rest are counted (a 1M-entry map replace sends ~1,500 payloads). */
export const MAX_COMMANDS_PER_ENTRY = 200

/** A command line is at most 16 KiB (a long map value); the audit keeps the first 1 KiB of it. */
export const MAX_TEXT_CHARS = 1024

const MAX_FIRST_LINE_CHARS = 200

export function isRead (verb: string): boolean {
  return /^(show|get)( |$)/.test(verb)
}

const clip = (text: string, max: number): string => text.length <= max ? text : `${text.slice(0, max)}… (${Buffer.byteLength(text)} bytes)`

/** A command as the audit keeps it: the exact text (clipped past 1 KiB), a payload as its size and first line. */
export function auditCommand (text: string, result: AuditCommandResult, payload?: string): AuditCommand {
  if (payload === undefined) return { text: clip(text, MAX_TEXT_CHARS), result }
  const newline = payload.indexOf('\n')
  let lines = 0
  for (let i = newline; i !== -1; i = payload.indexOf('\n', i + 1)) lines++
  return {
    text: clip(text, MAX_TEXT_CHARS),
    result,
    payload: {
      lines,
      bytes: Buffer.byteLength(payload),
      firstLine: clip(newline === -1 ? payload : payload.slice(0, newline), MAX_FIRST_LINE_CHARS)
    }
  }
}

/**
 * The object a command acts on, from its text: `backend:<b>`, `server:<b>/<s>`, `map:<m>`, or null.
 * Command texts come from the builders (src/runtime/commands/), so their shapes are known.
 */
export function targetOfCommand (text: string): { kind: string, id: string } | null {
  const words = text.split(' ')
  // The object's keyword comes within the first words: `del backend <b>`, `set server <b>/<s> …`,
  // `enable health <b>/<s>`, `shutdown sessions server <b>/<s>`, `wait <delay> srv-removable <b>/<s>`.
  const at = words.slice(0, 4).findIndex(w => KEYWORDS.has(w))
  if (at === -1) return null
  const keyword = words[at] as string
  const name = words[at + 1]
  if (name === undefined) return null
  if (keyword === 'backend' || keyword === 'be-removable') return { kind: 'backend', id: name }
  if (keyword === 'map') {
    // `<verb> map [@<version>] <map> …`
    const map = name.startsWith('@') ? words[at + 2] : name
    return map === undefined ? null : { kind: 'map', id: map }
  }
  return name.includes('/') ? { kind: 'server', id: name } : null
}

const KEYWORDS: ReadonlySet<string> = new Set(['backend', 'be-removable', 'server', 'health', 'agent', 'srv-removable', 'map'])
