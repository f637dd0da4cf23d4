/**
 * Writes openapi/openapi.json from the routes' zod schemas; with --check, fails when the committed
 * file differs from what the code generates.
 */
import { readFile, writeFile, mkdir } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { buildApp } from './app.ts'
import { loadConfig } from './config.ts'
import type { Runtime } from './runtime/client.ts'

export const SPEC_PATH = fileURLToPath(new URL('../openapi/openapi.json', import.meta.url))

const offline: Runtime = {
  execute: async () => { throw new Error('the OpenAPI generator does not talk to HAProxy') },
  close: async () => {}
}

export async function generateSpec (): Promise<string> {
  const app = await buildApp({ config: loadConfig({ HAPCTL_STORE: 'memory' }), runtime: offline, logger: false, reconcile: false })
  await app.ready()
  const spec = app.swagger()
  await app.close()
  return JSON.stringify(spec, null, 2) + '\n'
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const spec = await generateSpec()
  if (process.argv.includes('--check')) {
    const committed = await readFile(SPEC_PATH, 'utf8').catch(() => '')
    if (committed !== spec) {
      process.stderr.write('openapi/openapi.json is stale: run `npm run openapi` and commit the result\n')
      process.exit(1)
    }
  } else {
    await mkdir(new URL('../openapi/', import.meta.url), { recursive: true })
    await writeFile(SPEC_PATH, spec)
    process.stdout.write(`wrote ${SPEC_PATH}\n`)
  }
}
