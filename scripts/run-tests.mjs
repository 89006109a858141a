#!/usr/bin/env node
// Runs the compiled tests with node's test runner: unit tests beside each package's sources
// (packages/*/dist/**/*.test.js) and, unless --unit, the end-to-end tests in test/dist.
// Node 20's --test takes no globs, so the files are listed here. End-to-end tests run one file at
// a time: they start real llama.cpp processes on a 2-core machine.
import { existsSync, readdirSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'
import { spawnSync } from 'node:child_process'

const unitOnly = process.argv.includes('--unit')
const root = new URL('..', import.meta.url).pathname

function testFiles(dir) {
  let found = []
  let entries
  try {
    entries = readdirSync(dir)
  } catch {
    return found
  }
  for (const name of entries) {
    const path = join(dir, name)
    if (statSync(path).isDirectory()) found = found.concat(testFiles(path))
    else if (name.endsWith('.test.js')) found.push(path)
  }
  return found.sort()
}

// Only compiled tests whose source still exists: tsc never deletes the output of a deleted source, and a
// stale test must not run (or pass) in its place.
const hasSource = (compiled, distDir, srcDir) => existsSync(join(srcDir, relative(distDir, compiled).replace(/\.js$/, '.ts')))
const unit = readdirSync(join(root, 'packages')).flatMap((pkg) => {
  const dist = join(root, 'packages', pkg, 'dist')
  return testFiles(dist).filter((f) => hasSource(f, dist, join(root, 'packages', pkg, 'src')))
})
const e2e = unitOnly
  ? []
  : testFiles(join(root, 'test', 'dist')).filter((f) => hasSource(f, join(root, 'test', 'dist'), join(root, 'test')))
const files = [...unit, ...e2e]
if (files.length === 0) {
  console.error('run-tests: no compiled test files found (did `tsc -b` run?)')
  process.exit(1)
}
if (e2e.length > 0) {
  // The end-to-end tests run real llama.cpp: set it up first, as users do (a no-op when it is in the
  // cache; on a fresh machine it builds, with progress), so `npm test` works right after `npm ci`.
  const setup = spawnSync(process.execPath, [join(root, 'packages/sollol-agent/bin/sollol-agent.js'), 'setup'], { stdio: 'inherit' })
  if (setup.status !== 0) {
    console.error(`run-tests: \`sollol-agent setup\` failed (exit ${setup.status}); the end-to-end tests need llama.cpp`)
    process.exit(setup.status ?? 1)
  }
}
// With llama.cpp set up, the in-process agent tests must not skip for want of it.
const env = e2e.length > 0 ? { ...process.env, SOLLOL_REQUIRE_LLAMA: '1' } : process.env
const result = spawnSync(process.execPath, ['--test', '--test-concurrency=1', '--test-reporter=spec', ...files], { stdio: 'inherit', env })
process.exit(result.status ?? 1)
