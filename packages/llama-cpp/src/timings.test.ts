import { test } from 'node:test'
import assert from 'node:assert/strict'
import { FAST_TEST_TIMINGS, LAN_TIMINGS, restartDelayMs } from './timings.js'

test('restart delay doubles per crash in a row up to the cap', () => {
  const t = { restartInitialMs: 500, restartMaxMs: 30_000 }
  assert.deepEqual(
    [1, 2, 3, 4, 7, 8, 100].map((n) => restartDelayMs(n, t)),
    [500, 1000, 2000, 4000, 30_000, 30_000, 30_000]
  )
})

test('presets are ordered sensibly', () => {
  for (const preset of [LAN_TIMINGS, FAST_TEST_TIMINGS]) {
    assert.ok(preset.restartInitialMs <= preset.restartMaxMs)
    assert.ok(preset.readyPollMs < preset.readyTimeoutMs)
  }
  assert.ok(FAST_TEST_TIMINGS.readyTimeoutMs < LAN_TIMINGS.readyTimeoutMs)
})
