import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

/**
 * The package's directory. Relative to this module, which sits at the top of dist/ both compiled and
 * bundled (dist/cli.bundle.mjs), so the path holds in either.
 */
export const PACKAGE_ROOT = fileURLToPath(new URL('..', import.meta.url))

/** The agent's version, from its package.json (one source of truth). */
export const AGENT_VERSION: string = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string })
  .version
