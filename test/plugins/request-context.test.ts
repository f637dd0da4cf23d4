import { setTimeout as sleep } from 'node:timers/promises'
import Fastify from 'fastify'
import { describe, expect, it, onTestFinished } from 'vitest'
import { RequestContext } from '../../src/plugins/request-context.ts'
import type { Runtime } from '../../src/runtime/client.ts'

type Line = { level: string, obj: Record<string, unknown>, msg: string }

/** A logger recording its lines; `debug` can be turned off as pino's level would. */
function recorder (debugOn = true) {
  const lines: Line[] = []
  const at = (level: string) => (obj: object, msg: string) => { lines.push({ level, obj: obj as Record<string, unknown>, msg }) }
  return { lines, base: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error'), isLevelEnabled: (l: string) => l !== 'debug' || debugOn } }
}

async function appWith (ctx: RequestContext) {
  const app = Fastify({ genReqId: req => String(req.headers['x-request-id'] ?? 'generated') })
  onTestFinished(async () => { await app.close() })
  ctx.register(app)
  return app
}

describe('RequestContext', () => {
  it('adds the request id to the lines a module writes for a request, after awaits and body parsing, and to none outside one', async () => {
    const ctx = new RequestContext()
    const { lines, base } = recorder()
    const log = ctx.logger(base)
    const app = await appWith(ctx)
    let later: Promise<void> | undefined
    app.post('/work', async function (request) {
      await sleep(1)
      log.debug({ step: 1 }, 'after an await')
      log.warn({ body: request.body }, 'with the body')
      // Work that outlives the answer (a timer started now) is no longer the request's.
      later = sleep(30).then(() => { log.info({}, 'after the answer') })
      return { ok: true }
    })
    log.info({ step: 0 }, 'outside')
    const res = await app.inject({ method: 'POST', url: '/work', headers: { 'x-request-id': 'abc-123' }, payload: { a: 1 } })
    expect(res.statusCode).toBe(200)
    await later
    expect(lines).toEqual([
      { level: 'info', obj: { step: 0 }, msg: 'outside' },
      { level: 'debug', obj: { reqId: 'abc-123', step: 1 }, msg: 'after an await' },
      { level: 'warn', obj: { reqId: 'abc-123', body: { a: 1 } }, msg: 'with the body' },
      { level: 'info', obj: {}, msg: 'after the answer' }
    ])
  })

  it('keeps two concurrent requests apart, and writes nothing for a level that is off', async () => {
    const ctx = new RequestContext()
    const { lines, base } = recorder(false)
    const log = ctx.logger(base)
    const app = await appWith(ctx)
    app.get('/w/:n', async function (request) {
      const { n } = request.params as { n: string }
      await sleep(n === 'a' ? 20 : 1)
      log.info({ n }, 'done')
      log.debug({ n }, 'not written')
      return { n }
    })
    await Promise.all([
      app.inject({ url: '/w/a', headers: { 'x-request-id': 'id-a' } }),
      app.inject({ url: '/w/b', headers: { 'x-request-id': 'id-b' } })
    ])
    expect(lines.map(l => [l.obj.n, l.obj.reqId, l.level]).sort()).toEqual([['a', 'id-a', 'info'], ['b', 'id-b', 'info']])
  })

  it('runs a detached runtime\'s calls outside the request (background work the request merely started)', async () => {
    const ctx = new RequestContext()
    const seen: Array<string | undefined> = []
    const runtime = {
      execute: async () => { await sleep(1); seen.push(ctx.requestId); return [] },
      close: async () => {}
    } as unknown as Runtime
    const app = await appWith(ctx)
    app.get('/r', async function () {
      await runtime.execute([])
      await ctx.detached(runtime).execute([])
      return {}
    })
    await app.inject({ url: '/r', headers: { 'x-request-id': 'req-9' } })
    expect(seen).toEqual(['req-9', undefined])
  })
})
