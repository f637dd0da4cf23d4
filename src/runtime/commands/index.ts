/**
 * Every command builder, by resource. Callers import from here: `import * as cmd from '…/commands/index.ts'`.
 */
export * from './core.ts'
export * from './backends.ts'
export * from './servers.ts'
export * from './maps.ts'
