import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { readModelHeader, readModelInfo } from './read.js'
import { shardPaths } from './split.js'
import { tensorByteSizes } from './model-info.js'
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
