import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  deciLayerShapes,
  buildTestModel,
  DEFAULT_TEST_MODEL,
  TEST_ARCHITECTURES,
  TEST_MOE,
  testVocabulary,
  validateTestModelOptions,
  writeTestModel,
  type TestArchitecture
} from './test-model.js'
import type { MetadataEntry } from './writer.js'
import { readGgufHeader, readModelInfo } from './read.js'
import { describeModel } from './model-info.js'

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
  assert.throws(() => validateTestModelOptions({ ...DEFAULT_TEST_MODEL, type: 'q4' as 'f32' }), /one of f32, f16, q4_0.*got `q4`/)
  // a row of a k-quant holds whole blocks of 256
  assert.throws(
    () => validateTestModelOptions({ ...DEFAULT_TEST_MODEL, embd: 128, ff: 256, type: 'q4_k' }),
    /--embd and --ff to be multiples of 256 for q4_k .*got `128` and `256`/
  )
})

test('a quantized model: its layers in the type with whole blocks and finite scales, embeddings in f16', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sollol-gguf-'))
  try {
    const options = { ...DEFAULT_TEST_MODEL, layers: 2, embd: 256, ff: 512, heads: 2, type: 'q4_k' as const }
    const path = join(dir, 'q.gguf')
    writeTestModel(path, options)
    const header = await readGgufHeader(path)
    const info = describeModel(header)
    assert.equal(info.layerWeightType, 'q4_k')
    // 4 x 256 x 256 + 3 x 256 x 512 values of q4_k (144 bytes a block of 256), two f32 norms
    const perLayer = ((4 * 256 * 256 + 3 * 256 * 512) / 256) * 144 + 2 * 256 * 4
    for (const bytes of info.layerWeightBytes) assert.ok(bytes >= perLayer && bytes < perLayer + 9 * 32, `layer bytes ${bytes}`)
    assert.equal(header.tensors.find((t) => t.name === 'token_embd.weight')?.ggmlType, 1)
    // every block's d and dmin (the first two halves) are the same finite scale
    const q = header.tensors.find((t) => t.name === 'blk.0.attn_q.weight')
    assert.ok(q !== undefined && q.ggmlType === 12)
    const data = readFileSync(path).subarray(header.tensorDataOffset + q.offset, header.tensorDataOffset + q.offset + 144 * 256)
    const scales = new Set<number>()
    for (let at = 0; at < data.length; at += 144) scales.add(data.readUInt16LE(at)).add(data.readUInt16LE(at + 2))
    assert.deepEqual([...scales], [0x1c00]) // 1/256 in binary16
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
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

test('each architecture has the tensors and keys llama.cpp loads it by', async () => {
  const names = (arch: TestArchitecture): Map<string, readonly number[]> =>
    new Map(buildTestModel({ ...DEFAULT_TEST_MODEL, arch, layers: 2 }).tensors.map((t) => [t.name, t.shape]))
  const keys = (arch: TestArchitecture): Map<string, MetadataEntry> => buildTestModel({ ...DEFAULT_TEST_MODEL, arch, layers: 2 }).metadata
  const { embd, ff, heads } = DEFAULT_TEST_MODEL
  for (const arch of TEST_ARCHITECTURES) {
    const t = names(arch)
    const k = keys(arch)
    assert.deepEqual(k.get('general.architecture')?.value, arch)
    assert.deepEqual(k.get(`${arch}.block_count`)?.value, 2, `${arch}: keys under its own prefix`)
    assert.ok(t.has('token_embd.weight') && t.has('blk.0.attn_q.weight') && !t.has('output.weight'), `${arch}: tied output`)
    assert.equal(t.has('blk.0.attn_q.bias'), arch === 'qwen2', `${arch}: attention biases only in qwen2`)
    assert.equal(t.has('blk.0.attn_q_norm.weight'), arch === 'qwen3' || arch === 'qwen3moe' || arch === 'gemma3', `${arch}: q/k norms`)
    assert.equal(t.has('blk.0.post_ffw_norm.weight'), arch === 'gemma3', `${arch}: post-norms only in gemma3`)
    assert.equal(k.has(`${arch}.attention.sliding_window`), arch === 'gemma3', `${arch}: sliding window only in gemma3`)
    if (arch === 'qwen3moe') {
      assert.deepEqual(t.get('blk.0.ffn_gate_exps.weight'), [embd, ff / TEST_MOE.used, TEST_MOE.experts])
      assert.deepEqual(t.get('blk.0.ffn_down_exps.weight'), [ff / TEST_MOE.used, embd, TEST_MOE.experts])
      assert.deepEqual(t.get('blk.0.ffn_gate_inp.weight'), [embd, TEST_MOE.experts])
      assert.ok(!t.has('blk.0.ffn_gate.weight'))
    } else assert.deepEqual(t.get('blk.0.ffn_down.weight'), [ff, embd])
    if (arch === 'deci') {
      // per layer: KV heads 4 (all), then none (one matrix of "linear attention", no q/k/v), ff halved
      assert.deepEqual(t.get('blk.0.attn_k.weight'), [embd, embd])
      assert.ok(!t.has('blk.1.attn_k.weight') && t.has('blk.1.attn_output.weight'))
      assert.deepEqual(t.get('blk.1.ffn_up.weight'), [embd, ff / 2])
      assert.deepEqual(k.get('deci.attention.head_count_kv')?.value, [heads, 0])
    } else assert.ok(t.has('blk.1.attn_k.weight'))
    if (t.has('blk.0.attn_q_norm.weight')) assert.deepEqual(t.get('blk.0.attn_q_norm.weight'), [embd / heads])
  }
  // llama is what it always was: the default model's bytes do not depend on the architecture option
  const dir = mkdtempSync(join(tmpdir(), 'sollol-gguf-'))
  try {
    writeTestModel(join(dir, 'a.gguf'))
    writeTestModel(join(dir, 'b.gguf'), { ...DEFAULT_TEST_MODEL, arch: 'llama' })
    assert.ok(readFileSync(join(dir, 'a.gguf')).equals(readFileSync(join(dir, 'b.gguf'))))
    assert.throws(
      () => validateTestModelOptions({ ...DEFAULT_TEST_MODEL, arch: 'mamba' as TestArchitecture }),
      /Expected --arch to be one of/
    )
    assert.throws(() => validateTestModelOptions({ ...DEFAULT_TEST_MODEL, arch: 'qwen3moe', ff: 129 }), /multiple of 2/)
    const info = await readModelInfo(
      (writeTestModel(join(dir, 'moe.gguf'), { ...DEFAULT_TEST_MODEL, arch: 'qwen3moe' }), join(dir, 'moe.gguf'))
    )
    assert.equal(info.architecture, 'qwen3moe')
    assert.equal(info.layerCount, DEFAULT_TEST_MODEL.layers)
    assert.equal(info.feedForwardWidth, DEFAULT_TEST_MODEL.ff, 'the used experts together')
    assert.throws(() => validateTestModelOptions({ ...DEFAULT_TEST_MODEL, arch: 'deci', heads: 6, embd: 96 }), /multiple of 4/)
    writeTestModel(join(dir, 'deci.gguf'), { ...DEFAULT_TEST_MODEL, arch: 'deci', layers: 4 })
    const deci = await readModelInfo(join(dir, 'deci.gguf'))
    assert.deepEqual(deci.headCountKvPerLayer, deciLayerShapes(4, heads, ff).kvHeads)
    assert.deepEqual(deci.headCountKvPerLayer, [4, 0, 1, 4])
    assert.equal(deci.feedForwardWidth, ff)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})
