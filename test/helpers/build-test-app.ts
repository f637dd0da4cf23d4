import type { FastifyInstance } from 'fastify'
import { onTestFinished } from 'vitest'
import { buildApp } from '../../src/app.ts'
import { loadConfig } from '../../src/config.ts'
import type { Runtime } from '../../src/runtime/client.ts'

/** buildApp with a fake runtime and no logger, closed when the test ends. */
export async function buildTestApp (runtime: Runtime, env: Record<string, string> = {}): Promise<FastifyInstance> {
  const app = await buildApp({ config: loadConfig(env), runtime, logger: false })
  onTestFinished(async () => { await app.close() })
  return app
}
