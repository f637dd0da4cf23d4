/**
 * The integration configuration (./haproxy.ts defaultConfig) with one change to `myfrontend1`, for
 * tests that must tell a map entry pointing at a backend that cannot take traffic from any other
 * answer. HAProxy resolves a dynamic `use_backend %[…]` name at each request (configuration manual §4.2
 * use_backend) and, when it names no backend or an unpublished one, stops evaluating the switching
 * rules and uses `default_backend` (as HAProxy 3.4.7 does on this very configuration). So here:
 *   - a path with no map entry goes to `webservers` (web1) by a rule of its own;
 *   - a path whose entry names a usable backend goes there;
 *   - a path whose entry names no backend (or an unpublished one) falls to `no_such_backend`, which
 *     answers 599 and nothing else does.
 */
import { defaultConfig } from './haproxy.ts'
import type { HaproxyConfigContext } from './haproxy.ts'

/** What `no_such_backend` answers: a map entry points at a backend that does not exist (or is not published). */
export const UNKNOWN_BACKEND_STATUS = 599

const ROUTING = '    use_backend %[path,map_beg(virt@paths.map)]\n    default_backend webservers\n'

export function stateConfig (ctx: HaproxyConfigContext): string {
  const base = defaultConfig(ctx)
  if (base.split(ROUTING).length !== 2) throw new Error('stateConfig: myfrontend1 of defaultConfig no longer routes as expected')
  return base.replace(ROUTING,
    '    use_backend webservers unless { path,map_beg(virt@paths.map) -m found }\n' +
    '    use_backend %[path,map_beg(virt@paths.map)]\n' +
    '    default_backend no_such_backend\n') + `
# reached only when a map entry names no usable backend (see test/helpers/state-haproxy.ts)
backend no_such_backend from mydefaults
    http-request return status ${UNKNOWN_BACKEND_STATUS} content-type text/plain string "no such backend"
`
}
