import { test } from 'node:test'
import assert from 'node:assert/strict'
import { kvBytesPerToken, kvBytesPerTokenByLayer, kvCellsPerLayer } from './kv-cache.js'

test('a token of KV cache per layer: f16 by default, smaller in quantized types', () => {
  const model = { headCountKv: 8, keyLength: 128, valueLength: 128 }
  assert.equal(kvBytesPerToken(model), 8 * 256 * 2)
  assert.equal(kvBytesPerToken(model, { k: 'q8_0', v: 'q8_0' }), 2 * (1024 / 32) * 34)
  assert.equal(kvBytesPerToken(model, { k: 'q4_0', v: 'f16' }), (1024 / 32) * 18 + 1024 * 2)
  assert.equal(kvBytesPerToken(model, { k: 'f32', v: 'f32' }), 8 * 256 * 4)
})

test('sliding-window layers keep window x slots + ubatch cells, padded to 256, at most the context', () => {
  const gemma = { window: 1024, layers: [true, true, true, true, true, false] }
  assert.deepEqual(kvCellsPerLayer(6, 8192, gemma), [4608, 4608, 4608, 4608, 4608, 8192])
  // one slot, a 128 window: 640 cells padded to 768 (what llama-server logged for gemma3 at 1024)
  assert.deepEqual(kvCellsPerLayer(2, 1024, { window: 128, layers: [true, false] }, 1), [768, 1024])
  assert.deepEqual(kvCellsPerLayer(2, 512, { window: 4096, layers: [true, true] }), [512, 512], 'never more than the context')
  assert.deepEqual(kvCellsPerLayer(3, 256, null), [256, 256, 256])
})

test('KV heads per layer: each layer its own cache size, none for a layer without KV heads', () => {
  assert.deepEqual(kvBytesPerTokenByLayer({ headCountKvPerLayer: [2, 0, 8], keyLength: 64, valueLength: 64 }), [512, 0, 2048])
  assert.equal(kvBytesPerTokenByLayer({ headCountKvPerLayer: null, keyLength: 64, valueLength: 64 }), undefined)
})
