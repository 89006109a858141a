#!/usr/bin/env node
// The published entry point: everything else is compiled TypeScript in dist/, and dist/cli.bundle.mjs is
// all of it (and its dependencies) in one file, which loads in a third of the time (scripts/bundle.mjs).
// The bundle is used only while it is newer than every file it was built from: after an edit and a
// `tsc -b` alone, the compiled modules run.
import { readFileSync, statSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const dist = new URL('../dist/', import.meta.url)

function freshBundle() {
  try {
    const bundle = new URL('cli.bundle.mjs', dist)
    const builtAt = statSync(bundle).mtimeMs
    const { root, inputs } = JSON.parse(readFileSync(new URL('cli.bundle.inputs.json', dist), 'utf8'))
    // built elsewhere (an installed package): what it was built from is not here to compare with
    if (root !== fileURLToPath(new URL('../../../', import.meta.url))) return bundle
    for (const input of inputs) if (statSync(root + input).mtimeMs > builtAt) return undefined
    return bundle
  } catch {
    return undefined
  }
}

const { main } = await import((freshBundle() ?? new URL('main.js', dist)).href)
process.exitCode = await main(process.argv)
