/**
 * The executable: reads the configuration, builds the app, listens, and closes gracefully on
 * SIGINT/SIGTERM. Nothing else starts the service. Start-up failures are one line on stderr and
 * exit code 1: an operator needs the reason, not a stack trace.
 */
import closeWithGrace from 'close-with-grace'
import { buildApp } from './app.ts'
import { loadConfig } from './config.ts'

function fail (err: unknown): never {
  process.stderr.write(`hapctl: ${err instanceof Error ? err.message : String(err)}\n`)
  process.exit(1)
}

let config
try {
  config = loadConfig(process.env)
} catch (err) {
  fail(err)
}

const app = await buildApp({ config }).catch(fail)
closeWithGrace({ delay: 10_000 }, async function ({ err }) {
  if (err !== undefined) app.log.error({ err }, 'closing after an error')
  await app.close()
})
try {
  await app.listen({ host: config.host, port: config.port })
} catch (err) {
  await app.close().catch(() => {})
  fail(new Error(`cannot listen on ${config.host}:${config.port}: ${(err as Error).message}`))
}
