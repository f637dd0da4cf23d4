/**
 * The part of pino's logger a module uses, named by its levels: `Logger<'info' | 'warn'>`. Modules
 * take this rather than Fastify's or pino's type, so that src/runtime/ and src/engine/ stay free of
 * the HTTP layer, and tests can pass a plain object.
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error'

export type Logger<L extends LogLevel> = { [K in L]: (obj: object, msg: string) => void }
