import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { readModelHeader, readModelInfo } from './read.js'
import { shardPaths } from './split.js'
import { GgufFormatError, tensorByteSizes } from './model-info.js'
import { DEFAULT_TEST_MODEL, writeSplitTestModel, writeTestModel } from './test-model.js'

test('shard names: the whole set from any member; other names are no set', () => {
  assert.deepEqual(shardPaths('/m/qwen-00002-of-00003.gguf'), [
    '/m/qwen-00001-of-00003.gguf',
    '/m/qwen-00002-of-00003.gguf',
    '/m/qwen-00003-of-00003.gguf'
  ])
  assert.equal(shardPaths('/m/qwen.gguf'), undefined)
})

test('a split model reads as the same model as one file: layers, bytes, every tensor', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sollol-split-'))
  try {
    const options = { ...DEFAULT_TEST_MODEL, layers: 6 }
    writeTestModel(join(dir, 'whole.gguf'), options)
    const paths = writeSplitTestModel(join(dir, 'split'), 3, options)
    assert.equal(paths.length, 3)
    const whole = await readModelInfo(join(dir, 'whole.gguf'))
    const split = await readModelInfo(paths[0]!)
    assert.deepEqual(split, whole)
    const sizes = tensorByteSizes(await readModelHeader(paths[0]!))
    assert.deepEqual(sizes, tensorByteSizes(await readModelHeader(join(dir, 'whole.gguf'))))
    await assert.rejects(readModelInfo(paths[1]!), /Expected the first shard of the set/)
    rmSync(paths[2]!)
    await assert.rejects(readModelInfo(paths[0]!), /Expected shard .*00003-of-00003\.gguf.* missing/)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('a file or shard cut short is refused in one line naming it, before llama-server ever sees it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sollol-truncated-'))
  try {
    const whole = join(dir, 'whole.gguf')
    const size = writeTestModel(whole, DEFAULT_TEST_MODEL)
    const cut = join(dir, 'cut.gguf')
    writeFileSync(cut, readFileSync(whole).subarray(0, size - 100))
    await assert.rejects(readModelInfo(cut), (err: Error) => {
      assert.ok(err instanceof GgufFormatError)
      assert.match(err.message, /^Expected `.*cut\.gguf` to hold \d+ bytes of tensor data, got \d+: the file is truncated/)
      return true
    })
    // the middle shard of a set, cut short: named, though the first shard reads fine
    const paths = writeSplitTestModel(join(dir, 'split'), 3, DEFAULT_TEST_MODEL)
    const middle = paths[1]!
    writeFileSync(middle, readFileSync(middle).subarray(0, statSync(middle).size - 64))
    await assert.rejects(readModelInfo(paths[0]!), /split-00002-of-00003\.gguf` to hold \d+ bytes of tensor data/)
    // whole files of every type the generator writes read as before
    assert.equal((await readModelInfo(whole)).layerCount, DEFAULT_TEST_MODEL.layers)
    const f16 = join(dir, 'f16.gguf')
    writeTestModel(f16, { ...DEFAULT_TEST_MODEL, type: 'f16' })
    assert.equal((await readModelInfo(f16)).layerCount, DEFAULT_TEST_MODEL.layers)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})
