/**
 * Maps and their entries. Keys and values are checked with the same functions the command builders
 * use (src/runtime/validation.ts), so whatever passes here is stored and read back byte for byte.
 */
import { z } from 'zod'
import { MAP_KEY_MAX_BYTES, MAP_NAME_PATTERN, MAP_VALUE_MAX_BYTES, mapKeyProblem, mapValueProblem } from '../runtime/validation.ts'

export const MapNameSchema = z.string()
  .regex(MAP_NAME_PATTERN, 'virt@<name>, a file path as written in the configuration, or #<id> (URL-encode / and #)')
  .meta({ example: 'virt@paths.map' })

export const MapKeySchema = z.string()
  .superRefine((v, ctx) => {
    const problem = mapKeyProblem(v)
    if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem })
  })
  .meta({
    description: `One word: no blanks, control characters, ';', '\\\\' or '<<', not starting with '#', at most ${MAP_KEY_MAX_BYTES} UTF-8 bytes`,
    example: '/api'
  })

export const MapValueSchema = z.string()
  .superRefine((v, ctx) => {
    const problem = mapValueProblem(v)
    if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem })
  })
  .meta({
    description: `Spaces inside are kept; not at either end. No control characters, ';', '\\\\' or '<<'; at most ${MAP_VALUE_MAX_BYTES} UTF-8 bytes`,
    example: 'webservers'
  })

export const MapEntrySchema = z.object({
  key: MapKeySchema,
  value: MapValueSchema
}).strict().meta({ id: 'MapEntry' })

/**
 * An entry as HAProxy holds it. Responses use this, not MapEntrySchema: a map may hold entries that
 * hapctl would refuse to write (regex keys with `\\`, `#` keys stored by other tools), and reading
 * them must still work.
 */
export const StoredMapEntrySchema = z.object({
  key: z.string(),
  value: z.string()
}).meta({ id: 'StoredMapEntry' })

export const MapSchema = z.object({
  name: z.string().describe('How to address the map: virt@<name>, or the file path as written in the configuration (without opt@)'),
  id: z.number().int().describe('HAProxy id (#<id>); depends on the configuration layout'),
  kind: z.enum(['virtual', 'file']),
  entries: z.number().int().nullable().describe('Entries of the current version, counted from `show map`; null when the name cannot be addressed'),
  currentVersion: z.number().int().nullable(),
  nextVersion: z.number().int().nullable().describe('Above currentVersion while a prepared version is pending'),
  description: z.string().describe("HAProxy's description: where the map comes from and which rules use it"),
  managed: z.boolean().describe('Whether hapctl keeps the map\'s content (true once the map has been written through hapctl): it puts that content back after every HAProxy reload or restart')
}).meta({ id: 'Map' })

export const MapListSchema = z.object({ items: z.array(MapSchema) }).meta({ id: 'MapList' })

export const MapParamsSchema = z.object({ map: MapNameSchema })
export const MapEntryParamsSchema = z.object({ map: MapNameSchema, key: MapKeySchema })

export const EntryListQuerySchema = z.object({
  limit: z.coerce.number().int().min(1).max(10_000).default(1000).describe('Entries per page (1-10000, default 1000)'),
  cursor: z.string().max(4096).optional().describe('`next` of the previous page'),
  prefix: z.string().max(MAP_KEY_MAX_BYTES).optional().describe('Only keys starting with this text')
})

export const EntryPageSchema = z.object({
  items: z.array(StoredMapEntrySchema),
  next: z.string().optional().describe('Cursor of the next page; absent on the last one')
}).meta({ id: 'MapEntryPage' })

export const IfMatchHeadersSchema = z.object({
  'if-match': z.string().optional().describe('ETag of GET /maps/{map}/entries; the write happens only if the map still has it (412 otherwise)')
})

export const PutEntryBodySchema = z.object({ value: MapValueSchema }).strict().meta({ id: 'MapEntryValue' })

/** Entries of one whole-map replacement (JSON or map file); bounds the work one request can cause. */
export const MAX_REPLACE_ENTRIES = 1_000_000

/**
 * Whether `data` is an array ReplaceBodySchema accepts as it is, checked in one loop without building
 * anything: at most MAX_REPLACE_ENTRIES plain objects with exactly the string members `key` and
 * `value`, each storable. zod would build and check a new object per entry (for 100,000 entries, a
 * large share of the request's CPU time); only a body this refuses goes through zod, for its errors.
 */
export function isValidReplaceArray (data: unknown): boolean {
  if (!Array.isArray(data) || data.length > MAX_REPLACE_ENTRIES) return false
  for (let i = 0; i < data.length; i++) {
    const e: unknown = data[i]
    if (e === null || typeof e !== 'object' || Array.isArray(e) || Object.getPrototypeOf(e) !== Object.prototype) return false
    const { key, value } = e as { key?: unknown, value?: unknown }
    if (typeof key !== 'string' || typeof value !== 'string' || mapKeyProblem(key) !== undefined || mapValueProblem(value) !== undefined) return false
    let members = 0
    for (const name in e) { if (!Object.hasOwn(e, name)) return false; members++ }
    if (members !== 2) return false
  }
  return true
}

export const ReplaceBodySchema = z.union([
  z.array(MapEntrySchema).max(MAX_REPLACE_ENTRIES),
  z.string().describe('text/plain map file: `<key> <value>` per line, value = rest of the line; blank lines and # comments skipped')
]).describe('application/json: [{key, value}], or text/plain: a map file')

export const MapChangeSchema = z.union([
  MapEntrySchema,
  z.object({ key: MapKeySchema, delete: z.literal(true) }).strict()
]).meta({ id: 'MapChange' })

export const PatchBodySchema = z.array(MapChangeSchema).min(1).max(100_000)

export const ReplaceResultSchema = z.object({
  entries: z.number().int().describe('Entries in the map after the change')
}).meta({ id: 'MapReplaceResult' })
