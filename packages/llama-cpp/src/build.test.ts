import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildTargets, cacheKey, checkBuildTools, cmakeOptions, MissingToolError } from './build.js'

test('cmakeOptions enable RPC, avoid downloads and select the GPU backend', () => {
  const cpu = cmakeOptions({ backend: 'cpu', native: true })
  assert.ok(cpu.includes('-DGGML_RPC=ON'))
  assert.ok(cpu.includes('-DLLAMA_USE_PREBUILT_UI=OFF'))
  assert.ok(cpu.includes('-DGGML_NATIVE=ON'))
  assert.ok(!cpu.some((o) => o.includes('CUDA')))
  assert.ok(cmakeOptions({ backend: 'cuda', native: true }).includes('-DGGML_CUDA=ON'))
  assert.ok(cmakeOptions({ backend: 'vulkan', native: false }).includes('-DGGML_NATIVE=OFF'))
})

test('a loadable build compiles no CPU backend and adds the RPC module; GPU source builds stay as they were', () => {
  const loadable = cmakeOptions({ backend: 'cpu', native: true, loadable: true })
  for (const o of ['-DGGML_BACKEND_DL=ON', '-DGGML_CPU=OFF', '-DGGML_NATIVE=OFF']) assert.ok(loadable.includes(o), o)
  assert.ok(!loadable.includes('-DGGML_NATIVE=ON'), 'GGML_NATIVE cannot go with GGML_BACKEND_DL')
  assert.ok(buildTargets({ backend: 'cpu', native: true, loadable: true }).includes('ggml-rpc'))
  assert.ok(!buildTargets({ backend: 'cpu', native: true }).includes('ggml-rpc'))
  // loadable applies to CPU builds only: --backend cuda is the source build it always was
  assert.deepEqual(cmakeOptions({ backend: 'cuda', native: true, loadable: true }), cmakeOptions({ backend: 'cuda', native: true }))
  assert.notEqual(cacheKey({ backend: 'cpu', native: true, loadable: true }), cacheKey({ backend: 'cpu', native: true }))
})

test('the cache key changes with every option and stays the same otherwise', () => {
  const a = cacheKey({ backend: 'cpu', native: true })
  assert.equal(a, cacheKey({ backend: 'cpu', native: true }))
  assert.notEqual(a, cacheKey({ backend: 'cpu', native: false }))
  assert.notEqual(a, cacheKey({ backend: 'cuda', native: true }))
  assert.notEqual(a, cacheKey({ backend: 'cpu', native: true }, '9.9.9'))
  assert.match(a, /^node-llama-cpp-3\.21\.1-cpu-[0-9a-f]{10}$/)
})

test('a missing build tool is one actionable line', () => {
  const empty = mkdtempSync(join(tmpdir(), 'sollol-path-'))
  try {
    assert.throws(
      () => checkBuildTools(empty),
      (err: Error) =>
        err instanceof MissingToolError && /`cmake` is missing.*apt-get install cmake/.test(err.message) && !err.message.includes('\n')
    )
  } finally {
    rmSync(empty, { recursive: true, force: true })
  }
})
