/**
 * The executable: reads the configuration, builds the app, listens, and closes gracefully on
 * SIGINT/SIGTERM. Nothing else starts the service.
 */
import closeWithGrace from 'close-with-grace'
import { buildApp } from './app.ts'
import { ConfigError, loadConfig } from './config.ts'

let config
try {
  config = loadConfig(process.env)
} catch (err) {
  if (err instanceof ConfigError) {
    process.stderr.write(`hapctl: ${err.message}\n`)
    process.exit(1)
  }
  throw err
}

const app = await buildApp({ config })
closeWithGrace({ delay: 10_000 }, async function ({ err }) {
  if (err !== undefined) app.log.error({ err }, 'closing after an error')
  await app.close()
})
await app.listen({ host: config.host, port: config.port })
