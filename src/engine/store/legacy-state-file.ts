/**
 * Reads the state file that hapctl wrote before the desired-state store existed (HAPCTL_STATE_FILE,
 * written by the BackendCatalog of src/services/catalog.ts): which backends hapctl had created, from
 * which defaults section, in which HAProxy process. It is read once, to import those backends into
 * the store, and ignored from then on.
 *
 * The format: `{ version: 1, process: "pid@start" | undefined, backends: { [name]: { from, createdAt,
 * dynamicServers, dynamicServersNote } } }`. Only what the import needs is checked.
 */
import { readFileSync } from 'node:fs'
import { z } from 'zod'

export type LegacyState = {
  /** The HAProxy process (`pid@start_time`) the backends were created in, when the file says. */
  readonly process: string | undefined
  readonly backends: ReadonlyArray<{ readonly name: string, readonly from: string }>
}

const LegacyFileSchema = z.object({
  version: z.literal(1, 'unknown version (hapctl wrote version 1)'),
  process: z.string().nullish(),
  backends: z.record(z.string().min(1), z.looseObject({ from: z.string().min(1) }))
})

/** undefined when there is no file; throws, naming the file, when it cannot be read or is not one. */
export function readLegacyStateFile (path: string): LegacyState | undefined {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw new Error(`cannot read HAPCTL_STATE_FILE ${path}: ${(err as Error).message}`, { cause: err })
  }
  const todo = 'fix it, or move it away (it only lists backends an older hapctl had created, for a one-time import)'
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (err) {
    throw new Error(`HAPCTL_STATE_FILE ${path} is not JSON (${(err as Error).message}); ${todo}`, { cause: err })
  }
  const parsed = LegacyFileSchema.safeParse(json)
  if (!parsed.success) {
    const issues = parsed.error.issues.map(i => `${i.path.length > 0 ? i.path.join('.') : 'file'}: ${i.message}`).join('; ')
    throw new Error(`HAPCTL_STATE_FILE ${path} is not a hapctl state file (${issues}); ${todo}`)
  }
  return {
    process: parsed.data.process ?? undefined,
    backends: Object.entries(parsed.data.backends).map(([name, entry]) => ({ name, from: entry.from }))
  }
}
