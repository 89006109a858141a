import { test } from 'node:test'
import assert from 'node:assert/strict'
import { CALIBRATION_MODEL, CALIBRATION_MODEL_LARGE, PORTABLE_HEAD_SIZES } from './calibrate.js'

test('the calibration model has attention heads every backend runs with flash attention', () => {
  // a head size ggml-cuda has no kernel for aborts the rpc-server being measured (seen on an H200 with 32)
  assert.equal(CALIBRATION_MODEL.embd % CALIBRATION_MODEL.heads, 0)
  assert.ok(PORTABLE_HEAD_SIZES.includes(CALIBRATION_MODEL.embd / CALIBRATION_MODEL.heads))
})

test('the second calibration size has the same layers, three times as many', () => {
  const { layers, ...shape } = CALIBRATION_MODEL_LARGE
  const { layers: smallLayers, ...smallShape } = CALIBRATION_MODEL
  assert.deepEqual(shape, smallShape)
  assert.equal(layers, 3 * smallLayers)
})
