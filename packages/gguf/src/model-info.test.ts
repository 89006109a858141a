import { test } from 'node:test'
import assert from 'node:assert/strict'
import { describeModel, GgufFormatError, kvBytesPerLayer, slidingWindowOf, type GgufHeader } from './model-info.js'

const metadata = {
  'general.architecture': 'llama',
  'llama.block_count': 2,
  'llama.context_length': 2048,
  'llama.embedding_length': 64,
  'llama.attention.head_count': 8,
  'llama.attention.head_count_kv': 2,
  'tokenizer.ggml.tokens': ['a', 'b', 'c']
}

function header(tensors: Array<[string, number]>, extra: Record<string, unknown> = {}): GgufHeader {
  let offset = 0
  const entries = tensors.map(([name, bytes]) => {
    const e = { name, shape: [bytes], ggmlType: 0, offset }
    offset += bytes
    return e
  })
  return { metadata: { ...metadata, ...extra }, tensors: entries, tensorDataOffset: 1000, fileSize: 1000 + offset }
}

test('describeModel sums bytes per layer, embeddings and output from tensor offsets', () => {
  const info = describeModel(
    header([
      ['token_embd.weight', 300],
      ['output_norm.weight', 10],
      ['output.weight', 300],
      ['blk.0.attn_q.weight', 100],
      ['blk.0.ffn_up.weight', 50],
      ['blk.1.attn_q.weight', 100],
      ['blk.1.ffn_up.weight', 70]
    ])
  )
  assert.deepEqual(info.layerWeightBytes, [150, 170])
  assert.equal(info.embeddingBytes, 300)
  assert.equal(info.outputBytes, 310)
  assert.equal(info.tiedOutput, false)
  assert.equal(info.totalWeightBytes, 930)
  assert.equal(info.vocabSize, 3)
  // GQA: 2 kv heads x (8 + 8) dims x 2 bytes
  assert.equal(info.kvBytesPerTokenPerLayer, 2 * 16 * 2)
  assert.equal(kvBytesPerLayer(info, 100), 6400)
})

test('a model without output.weight uses its embeddings as the output', () => {
  const info = describeModel(
    header([
      ['token_embd.weight', 300],
      ['output_norm.weight', 10],
      ['blk.0.x', 1],
      ['blk.1.x', 1]
    ])
  )
  assert.equal(info.tiedOutput, true)
  assert.equal(info.outputBytes, 310)
})

test('missing or malformed metadata is a GgufFormatError naming the key', () => {
  assert.throws(
    () => describeModel(header([], { 'llama.block_count': 'x' })),
    (err: Error) => err instanceof GgufFormatError && err.message.includes('llama.block_count')
  )
  assert.throws(() => describeModel(header([], { 'general.architecture': undefined })), /general.architecture/)
  assert.throws(() => describeModel(header([['blk.7.x', 1]])), /block_count 2/)
})

test('sliding-window layers as llama.cpp decides them: the file pattern, else the architecture default', () => {
  assert.deepEqual(slidingWindowOf('gemma3', { 'gemma3.attention.sliding_window': 512 }, 7)?.layers, [
    true,
    true,
    true,
    true,
    true,
    false,
    true
  ])
  assert.deepEqual(
    slidingWindowOf('gemma3', { 'gemma3.attention.sliding_window': 512, 'gemma3.attention.sliding_window_pattern': 2 }, 4)?.layers,
    [true, false, true, false]
  )
  assert.deepEqual(
    slidingWindowOf('x', { 'x.attention.sliding_window': 64, 'x.attention.sliding_window_pattern': [true, false, false] }, 3),
    { window: 64, layers: [true, false, false] }
  )
  assert.equal(slidingWindowOf('mistral', { 'mistral.attention.sliding_window': 4096 }, 4), null, 'no known pattern: not modelled')
  assert.equal(slidingWindowOf('llama', {}, 4), null)
})

/** A header with no tensors: 3 layers, 64 wide, architecture `x`, and the given metadata on top. */
const bareHeader = (extra: Record<string, unknown>): GgufHeader =>
  ({
    version: 3,
    metadata: {
      'general.architecture': 'x',
      'x.block_count': 3,
      'x.embedding_length': 64,
      'x.context_length': 128,
      'x.attention.head_count': 4,
      ...extra
    },
    tensors: [],
    dataOffset: 0,
    fileSize: 0
  }) as unknown as GgufHeader

test('KV heads given per layer are read per layer; the largest stands for the model', () => {
  const info = describeModel(bareHeader({ 'x.attention.head_count': [4, 4, 4], 'x.attention.head_count_kv': [2, 0, 4] }))
  assert.deepEqual([info.headCount, info.headCountKv, info.headCountKvPerLayer], [4, 4, [2, 0, 4]])
})

test('the widest feed-forward activation: the largest per-layer width, or the used experts (and a shared one)', () => {
  assert.equal(describeModel(bareHeader({ 'x.feed_forward_length': 256 })).feedForwardWidth, 256)
  assert.equal(describeModel(bareHeader({ 'x.feed_forward_length': [128, 0, 512] })).feedForwardWidth, 512)
  const moe = { 'x.expert_feed_forward_length': 96, 'x.expert_used_count': 8, 'x.expert_count': 128 }
  assert.equal(describeModel(bareHeader(moe)).feedForwardWidth, 768)
  assert.equal(describeModel(bareHeader({ ...moe, 'x.expert_shared_feed_forward_length': 512 })).feedForwardWidth, 1280)
  assert.equal(describeModel(bareHeader({ ...moe, 'x.feed_forward_length': 2048 })).feedForwardWidth, 2048, 'dense layers wider')
  assert.equal(describeModel(bareHeader({})).feedForwardWidth, undefined)
})
