import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DEFAULT_TEST_MODEL, testVocabulary, validateTestModelOptions, writeTestModel } from './test-model.js'
import { readModelInfo } from './read.js'

test('the default test model is about 1.5 MB with 8 layers, and reads back as written', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sollol-gguf-'))
  try {
    const path = join(dir, 'm.gguf')
    const size = writeTestModel(path)
    assert.ok(size > 1_000_000 && size < 2_000_000, `size ${size}`)
    const info = await readModelInfo(path)
    assert.equal(info.layerCount, 8)
    assert.equal(info.embeddingLength, DEFAULT_TEST_MODEL.embd)
    assert.equal(info.feedForwardLength, DEFAULT_TEST_MODEL.ff)
    assert.equal(info.vocabSize, testVocabulary().length)
    // 4 attention matrices + 3 feed-forward matrices + 2 norms, f32
    const e = DEFAULT_TEST_MODEL.embd
    const f = DEFAULT_TEST_MODEL.ff
    const perLayer = (4 * e * e + 3 * e * f + 2 * e) * 4
    for (const bytes of info.layerWeightBytes.slice(0, -1))
      assert.ok(bytes >= perLayer && bytes < perLayer + 9 * 32, `layer bytes ${bytes}`)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('same options and seed give the same bytes; another seed gives other weights', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sollol-gguf-'))
  try {
    const options = { ...DEFAULT_TEST_MODEL, layers: 2, embd: 32, ff: 64, type: 'f16' as const }
    writeTestModel(join(dir, 'a.gguf'), options)
    writeTestModel(join(dir, 'b.gguf'), options)
    writeTestModel(join(dir, 'c.gguf'), { ...options, seed: 7 })
    const a = readFileSync(join(dir, 'a.gguf'))
    assert.deepEqual(a, readFileSync(join(dir, 'b.gguf')))
    const c = readFileSync(join(dir, 'c.gguf'))
    assert.equal(a.length, c.length)
    assert.notDeepEqual(a, c)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('invalid options are rejected with what was expected and what arrived', () => {
  assert.throws(() => validateTestModelOptions({ ...DEFAULT_TEST_MODEL, layers: 0 }), /Expected --layers to be an integer 1-512, got `0`/)
  assert.throws(() => validateTestModelOptions({ ...DEFAULT_TEST_MODEL, embd: 66 }), /multiple of 2 x heads/)
  assert.throws(() => validateTestModelOptions({ ...DEFAULT_TEST_MODEL, type: 'q4' as 'f32' }), /f32 or f16/)
})

test('the vocabulary has the special tokens first and all 256 byte tokens', () => {
  const vocab = testVocabulary()
  assert.deepEqual(
    vocab.slice(0, 3).map((v) => v.text),
    ['<unk>', '<s>', '</s>']
  )
  assert.equal(vocab.filter((v) => v.type === 6).length, 256)
  assert.equal(new Set(vocab.map((v) => v.text)).size, vocab.length)
})
