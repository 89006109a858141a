import { test } from 'node:test'
import assert from 'node:assert/strict'
import { kvBytesPerToken, needsFlashAttention } from './kv-cache.js'

test('a token of KV cache per layer: f16 by default, smaller in quantized types', () => {
  const model = { headCountKv: 8, keyLength: 128, valueLength: 128 }
  assert.equal(kvBytesPerToken(model), 8 * 256 * 2)
  assert.equal(kvBytesPerToken(model, { k: 'q8_0', v: 'q8_0' }), 2 * (1024 / 32) * 34)
  assert.equal(kvBytesPerToken(model, { k: 'q4_0', v: 'f16' }), (1024 / 32) * 18 + 1024 * 2)
  assert.equal(kvBytesPerToken(model, { k: 'f32', v: 'f32' }), 8 * 256 * 4)
  assert.equal(needsFlashAttention({ k: 'q8_0', v: 'f16' }), false)
  assert.equal(needsFlashAttention({ k: 'f16', v: 'q8_0' }), true)
})
