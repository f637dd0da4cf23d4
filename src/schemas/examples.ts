/**
 * What Swagger UI's "Try it out" starts from, by operationId: the example of each parameter and of
 * each request body media type (src/plugins/swagger.ts puts them into the document; bodies whose
 * schema is the operation's own keep their example in the schema, e.g. CreateBackendSchema).
 *
 * Each one, sent as it is, succeeds against `npm run demo` (examples/haproxy.cfg: defaults
 * `mydefaults`, backend `webservers` with server `web1`, map `virt@paths.map`) when the operations are
 * run in the order the console lists them (tags in the document's order, then paths): POST /backends
 * creates `mybackend1`, which GET, PATCH and DELETE /backends/{name} then use; POST …/servers adds
 * `app1` to `webservers`, which GET, PATCH and DELETE use; PUT …/entries writes `/api`, which the
 * single-entry operations use. Writes of the whole state are dry runs. test/openapi-examples.test.ts
 * runs every one through the routes' validation, test/integration/openapi-examples.test.ts against HAProxy.
 */

type OperationExamples = {
  /** Parameter examples by name (path, query and header parameters alike). */
  params?: Record<string, unknown>
  /** Request body examples by media type. */
  body?: Record<string, unknown>
}

/** A backend of the demo's configuration, and the map its frontend routes by (`map_beg(virt@paths.map)`). */
const DEMO_BACKEND = 'webservers'
const DEMO_MAP = 'virt@paths.map'

export const OPERATION_EXAMPLES: Readonly<Record<string, OperationExamples>> = {
  listAudit: { params: { target: 'backend:mybackend1' } },
  watchEvents: { params: { kind: 'change,health', backend: DEMO_BACKEND } },

  getBackend: { params: { name: 'mybackend1' } },
  updateBackend: { params: { name: 'mybackend1' } },
  deleteBackend: { params: { name: 'mybackend1' } },

  listServers: { params: { backend: DEMO_BACKEND } },
  createServer: { params: { backend: DEMO_BACKEND } },
  getServer: { params: { backend: DEMO_BACKEND, server: 'app1' } },
  updateServer: { params: { backend: DEMO_BACKEND, server: 'app1' } },
  deleteServer: { params: { backend: DEMO_BACKEND, server: 'app1' } },

  listMapEntries: { params: { map: DEMO_MAP } },
  replaceMapEntries: {
    params: { map: DEMO_MAP },
    body: {
      'application/json': [{ key: '/api', value: DEMO_BACKEND }, { key: '/app', value: DEMO_BACKEND }],
      'text/plain': `# <key> <value>, as in a map file\n/api ${DEMO_BACKEND}\n/app ${DEMO_BACKEND}\n`
    }
  },
  patchMapEntries: {
    params: { map: DEMO_MAP },
    body: { 'application/json': [{ key: '/images', value: DEMO_BACKEND }, { key: '/app', delete: true }] }
  },
  createMapEntry: { params: { map: DEMO_MAP }, body: { 'application/json': { key: '/static', value: DEMO_BACKEND } } },
  getMapEntry: { params: { map: DEMO_MAP, key: '/api' } },
  putMapEntry: { params: { map: DEMO_MAP, key: '/api' }, body: { 'application/json': { value: DEMO_BACKEND } } },
  deleteMapEntry: { params: { map: DEMO_MAP, key: '/api' } },

  // A dry run answers the plan (diff and commands) and changes nothing: running the example is safe.
  replaceState: {
    params: { dryRun: 'true' },
    body: {
      'application/json': {
        backends: { app: { from: 'mydefaults', published: true, servers: { app1: { address: '127.0.0.1', port: 8082 } } } },
        configBackends: {},
        maps: { [DEMO_MAP]: { entries: [{ key: '/app', value: 'app' }] } }
      }
    }
  },
  patchState: {
    params: { dryRun: 'true' },
    body: { 'application/json': { backends: { app: { from: 'mydefaults', servers: { app1: { address: '127.0.0.1', port: 8082, weight: 50 } } } } } }
  }
}
