import type { FastifyInstance } from 'fastify'
import { onTestFinished } from 'vitest'
import { buildApp } from '../../src/app.ts'
import type { AppDeps } from '../../src/app.ts'
import { loadConfig } from '../../src/config.ts'
import type { Config } from '../../src/config.ts'
import type { Runtime } from '../../src/runtime/client.ts'

/**
 * A configuration for tests: the store in memory unless the test names one, so that test files
 * running in parallel never share a database (their reconcilers would put each other's backends into
 * their own HAProxy).
 */
export function testConfig (env: Record<string, string> = {}): Config {
  return loadConfig({ HAPCTL_STORE: 'memory', ...env })
}

/** buildApp with a fake runtime, no logger and no reconciler, closed when the test ends. */
export async function buildTestApp (runtime: Runtime, env: Record<string, string> = {}, deps: Partial<AppDeps> = {}): Promise<FastifyInstance> {
  const app = await buildApp({ config: testConfig(env), runtime, logger: false, reconcile: false, ...deps })
  onTestFinished(async () => { await app.close() })
  return app
}

/** One request through `app.inject`, with its status and parsed JSON body (undefined when empty). */
export async function call (app: FastifyInstance, method: string, url: string, payload?: unknown): Promise<{ status: number, body: any }> {
  const res = await app.inject({ method: method as 'GET', url, ...(payload === undefined ? {} : { payload: payload as object }) })
  return { status: res.statusCode, body: res.body === '' ? undefined : res.json() }
}
