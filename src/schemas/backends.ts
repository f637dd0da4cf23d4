import { z } from 'zod'
import { PROXY_MODES } from '../runtime/validation.ts'
import { DurationSchema, NameSchema } from './common.ts'
import { CreateServerSchema } from './servers.ts'

export const BackendSchema = z.object({
  name: z.string(),
  mode: z.enum(PROXY_MODES).nullable().describe('Proxy mode; null when HAProxy reports another one'),
  published: z.boolean().describe('Whether use_backend/default_backend rules may select it (false = `UNPUB`)'),
  status: z.string().describe("HAProxy's backend status without the (UNPUB) suffix: UP or DOWN; an empty backend reports UP"),
  dynamic: z.boolean().describe('Created at runtime through hapctl (HAProxy itself does not expose this)'),
  from: z.string().nullable().describe('The defaults section it was created from, when hapctl created it'),
  balance: z.string().nullable().describe("HAProxy's `algo` column; 'unknown' means no balance line (round robin)"),
  acceptsDynamicServers: z.boolean().nullable().describe('Whether `add server` can work on it; null when it cannot be told (hash-based algorithms depend on hash-type)'),
  servers: z.number().int().describe('Number of servers'),
  warnings: z.array(z.string()).describe('Things that will surprise you about this backend')
}).meta({ id: 'Backend' })

export const BackendListSchema = z.object({
  items: z.array(BackendSchema)
}).meta({ id: 'BackendList' })

export const CreateBackendSchema = z.object({
  name: NameSchema,
  from: NameSchema.describe('A named defaults section of the running configuration'),
  mode: z.enum(PROXY_MODES).optional().describe('Required when the defaults section sets no mode'),
  published: z.boolean().default(false).describe('Publish it right away (a new backend starts unpublished)'),
  servers: z.array(CreateServerSchema).max(1000).optional()
    .refine(list => list === undefined || new Set(list.map(s => s.name)).size === list.length, 'server names must be unique')
    .describe('Servers to add before publishing; backend and servers are created all or nothing')
}).strict().meta({ id: 'CreateBackend', example: { name: 'mybackend1', from: 'mydefaults' } })

export const PatchBackendSchema = z.object({
  published: z.boolean()
}).strict().meta({ id: 'PatchBackend', example: { published: true } })

export const BackendParamsSchema = z.object({ name: NameSchema })

export const DeleteBackendQuerySchema = z.object({
  timeout: DurationSchema.prefault('5s').describe('How long to wait for its servers and streams to finish (500ms, 5s, 1m; default 5s)'),
  force: z.stringbool().prefault('false').describe('Also delete a backend hapctl did not create (a static one, which comes back on reload)')
})
