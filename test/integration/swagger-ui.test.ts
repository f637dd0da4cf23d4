import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { FastifyInstance } from 'fastify'
import type { Browser, Locator, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from '../../src/app.ts'
import { DOCS_TITLE } from '../../src/plugins/swagger.ts'
import { testConfig } from '../helpers/build-test-app.ts'
import { chromiumPath, launchChromium, noBrowserMessage } from '../helpers/browser.ts'
import { startHaproxy } from '../helpers/haproxy.ts'
import type { HaproxyConfigContext, HaproxyInstance } from '../helpers/haproxy.ts'

/*
 * Swagger UI as a new user meets it: the demo (HAProxy with examples/haproxy.cfg, hapctl on its Runtime
 * API), /docs in headless Chromium, the token given once to "Authorize" and kept across a reload, then
 * every operation expanded, "Try it out", nothing filled in, "Execute": each must answer 2xx with the
 * values Swagger UI prefills from the document's examples.
 */

const EXAMPLE_CFG = fileURLToPath(new URL('../../examples/haproxy.cfg', import.meta.url))
const TOKEN = 'swagger-ui-console-token-0123456789'

/**
 * The order a user would click in: reads of the service first, then each resource is created before it
 * is read or changed (POST /backends makes `mybackend1`, POST …/servers adds `app1` to `webservers`,
 * PUT …/entries writes `/api`), the whole-state writes (dry runs by their examples), and the
 * deletions last. Every operation of the document must be here or in NOT_EXECUTED, so a new one
 * fails this test until it has its place.
 */
const ORDER = [
  'getHealth',
  'getReady',
  'getStatus',
  'getMetrics',
  'listBackends',
  'createBackend',
  'getBackend',
  'updateBackend',
  'listServers',
  'createServer',
  'getServer',
  'updateServer',
  'listMaps',
  'listMapEntries',
  'replaceMapEntries',
  'patchMapEntries',
  'createMapEntry',
  'getMapEntry',
  'putMapEntry',
  'listAudit',
  'getState',
  'replaceState',
  'patchState',
  'deleteMapEntry',
  'deleteServer',
  'deleteBackend'
]

/**
 * GET /events is a Server-Sent Events stream that stays open by design: Swagger UI shows a response
 * only once its body has ended, so "Execute" would spin until the page is closed. It is expanded and
 * "Try it out" is checked to be offered, but it is not executed (test/integration/events.test.ts
 * covers the stream itself).
 */
const NOT_EXECUTED = ['watchEvents']

/**
 * examples/haproxy.cfg on free ports: the demo sets its `${DEMO_…-default}` variables (HAProxy's own
 * expansion) from the environment; here each one is written in with this instance's port, and each
 * must be found, so that the test never binds the demo's fixed ports.
 */
function demoConfig (ctx: HaproxyConfigContext): string {
  const values: Record<string, string> = {
    DEMO_RUNTIME_PORT: String(ctx.runtime),
    DEMO_FRONTEND_ADDR: '127.0.0.1',
    DEMO_FRONTEND_PORT: String(ctx.frontend),
    DEMO_WEB1_PORT: String(ctx.upstreams.web1?.port as number)
  }
  const seen = new Set<string>()
  const text = readFileSync(EXAMPLE_CFG, 'utf8').replace(/\$\{(DEMO_\w+)-[^}]*\}/g, (_all, name: string) => {
    const value = values[name]
    if (value === undefined) throw new Error(`examples/haproxy.cfg uses \${${name}}: give it a value in the Swagger UI test's demoConfig`)
    seen.add(name)
    return value
  })
  for (const name of ['DEMO_RUNTIME_PORT', 'DEMO_FRONTEND_PORT', 'DEMO_WEB1_PORT']) {
    if (!seen.has(name)) throw new Error(`examples/haproxy.cfg no longer uses \${${name}-…}: update the Swagger UI test's demoConfig, or it would bind the demo's fixed port`)
  }
  return text
}

type Operation = { operationId: string, tag: string, method: string, path: string }

/** What Swagger UI showed: the status, the response body, and how the document describes that status. */
type Outcome = Operation & { status: string, body: string, documented: string }

const browserPath = chromiumPath()
if (browserPath === undefined) console.warn(`Swagger UI console test skipped: ${noBrowserMessage()}`)

describe.skipIf(browserPath === undefined)('Swagger UI against the demo, in headless Chromium', () => {
  let h: HaproxyInstance | undefined
  let app: FastifyInstance | undefined
  let browser: Browser | undefined
  let base = ''
  let operations: Operation[] = []

  beforeAll(async () => {
    const started = await Promise.all([
      startHaproxy({ config: demoConfig, upstreams: ['web1', 'app1'] }),
      launchChromium(browserPath as string)
    ])
    h = started[0]
    browser = started[1]
    app = await buildApp({
      config: testConfig({ HAPROXY_RUNTIME_API: h.runtimeApi, API_TOKEN: TOKEN }),
      logger: false
    })
    await app.listen({ port: 0, host: '127.0.0.1' })
    base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`
    const doc = await (await fetch(`${base}/docs/json`)).json() as { paths: Record<string, Record<string, { operationId: string, tags: string[] }>> }
    operations = Object.entries(doc.paths).flatMap(([path, item]) =>
      Object.entries(item).map(([method, op]) => ({ operationId: op.operationId, tag: op.tags[0] as string, method, path })))
  })
  afterAll(async () => {
    await browser?.close()
    await app?.close()
    await h?.stop()
  })

  /** The operation's block, found as Swagger UI's deep links name it: `operations-<tag>-<operationId>`. */
  const block = (page: Page, op: Operation): Locator => page.locator(`#operations-${op.tag}-${op.operationId}`)

  async function open (op: Operation, page: Page): Promise<Locator> {
    const b = block(page, op)
    await b.locator('.opblock-summary-control').click()
    await b.locator('button.try-out__btn').click()
    return b
  }

  async function execute (op: Operation, page: Page): Promise<Outcome> {
    const b = await open(op, page)
    await b.locator('button.execute').click()
    const row = b.locator('.live-responses-table .response')
    const status = row.locator('.response-col_status')
    // Swagger UI sends nothing when its own checks of the prefilled values fail: it marks the fields.
    const refused = b.locator('.validation-errors, .invalid')
    await status.or(refused).first().waitFor()
    let outcome: Outcome
    if (await status.count() === 0) {
      const fields = await b.locator('.invalid').evaluateAll(els => els.map(e => e.getAttribute('placeholder') ?? e.tagName))
      outcome = { ...op, status: 'not sent', body: `Swagger UI refused the prefilled values: ${(await refused.first().innerText()).trim()} ${fields.join(', ')}`, documented: '' }
    } else {
      // Rendered with the status; a 204 has none (no waiting for what will not come).
      const pre = row.locator('.response-col_description .highlight-code pre')
      const body = await pre.count() > 0 ? await pre.first().innerText() : ''
      const code = (await status.innerText()).replace(/\s+/g, ' ').trim()
      // The same status in the operation's documented responses ("Created", not "Error").
      const described = b.locator(`.responses-table:not(.live-responses-table) tr.response[data-code="${code.split(' ')[0]}"] .response-col_description__inner`)
      const documented = await described.count() > 0 ? (await described.first().innerText()).trim() : 'Undocumented'
      outcome = { ...op, status: code, body: body.trim(), documented }
    }
    // Folded again, so the page keeps one operation open at a time.
    await b.locator('.opblock-summary-control').click()
    return outcome
  }

  it('names the console after hapctl, keeps the token across a reload, and every prefilled Try it out succeeds', async () => {
    const listed = [...ORDER, ...NOT_EXECUTED].sort()
    expect(operations.map(o => o.operationId).sort(), 'every operation of the document has its place in ORDER or NOT_EXECUTED').toEqual(listed)

    const context = await (browser as Browser).newContext()
    const page = await context.newPage()
    // Generous: Swagger UI resolves each operation as it is expanded, and CI shares two cores.
    page.setDefaultTimeout(20_000)
    await page.goto(`${base}/docs`)
    await page.locator('.opblock').first().waitFor()
    expect(await page.title()).toBe(DOCS_TITLE)

    // The token, given once…
    await page.locator('.auth-wrapper button.authorize').click()
    await page.locator('.modal-ux input').fill(TOKEN)
    await page.locator('.modal-ux button.authorize').click()
    await page.locator('.modal-ux button.btn-done').click()
    await page.locator('.auth-wrapper button.authorize.locked').waitFor()
    // …is still there after a reload (persistAuthorization), or every call below answers 401.
    await page.reload()
    await page.locator('.opblock').first().waitFor()
    await page.locator('.auth-wrapper button.authorize.locked').waitFor()

    const byId = new Map(operations.map(o => [o.operationId, o]))
    const outcomes: Outcome[] = []
    for (const id of ORDER) outcomes.push(await execute(byId.get(id) as Operation, page))
    for (const id of NOT_EXECUTED) {
      const b = await open(byId.get(id) as Operation, page)
      await b.locator('button.execute').waitFor()
    }
    await context.close()

    const table = outcomes.map(o => `${o.status.padEnd(12)} ${o.method.toUpperCase()} ${o.path} (${o.operationId}): ${o.documented.split('\n')[0]}`).join('\n')
    console.log(`Swagger UI, prefilled Try it out, in order:\n${table}`)
    const failed = outcomes.filter(o => !/^2\d\d$/.test(o.status) || o.documented === 'Undocumented' || /^Error\b/.test(o.documented))
    expect(failed.map(o => `${o.status} ${o.method.toUpperCase()} ${o.path} (${o.operationId}), documented as ${JSON.stringify(o.documented)}: ${o.body}`)).toEqual([])
  }, 150_000)
})
