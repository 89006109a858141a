#!/usr/bin/env node
// Bundles the CLI (packages/sollol-agent/dist/main.js, after `tsc -b`) into one ES module. Node 20 has no
// compile cache for ES modules, and loading the ~1,500 files of the agent and libp2p took 1.6 s of CPU
// before any command ran (`sollol-agent --version`); the bundle loads in ~0.5 s, which every agent start,
// every `status` and every join of a new agent gains. bin/sollol-agent.js uses the bundle only while it is
// newer than every file it was built from (its inputs are listed beside it), else the compiled modules:
// a stale bundle never runs after an edit and a `tsc -b` alone.
import { writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { build } from 'esbuild'

const root = fileURLToPath(new URL('..', import.meta.url))
const dist = `${root}packages/sollol-agent/dist/`
const result = await build({
  absWorkingDir: root,
  entryPoints: [`${dist}main.js`],
  outfile: `${dist}cli.bundle.mjs`,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  metafile: true,
  logLevel: 'warning',
  // CommonJS dependencies require Node's built-in modules: give the ES module bundle a `require`
  banner: { js: "import { createRequire as __sollolRequire } from 'node:module'; const require = __sollolRequire(import.meta.url);" }
})
// the files the bundle was built from, relative to the repository root (bin/sollol-agent.js checks them)
const inputs = Object.keys(result.metafile.inputs)
writeFileSync(`${dist}cli.bundle.inputs.json`, JSON.stringify({ root, inputs }))
