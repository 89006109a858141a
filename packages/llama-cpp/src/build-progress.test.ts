import { test } from 'node:test'
import assert from 'node:assert/strict'
import { BuildProgressTracker, formatDuration, parseProgressLine } from './build-progress.js'

test('parseProgressLine reads Ninja and Makefile progress', () => {
  assert.equal(parseProgressLine('[12/48] Building CXX object ggml/src/foo.o'), 0.25)
  assert.equal(parseProgressLine('[ 45%] Building CXX object src/x.o'), 0.45)
  assert.equal(parseProgressLine('[100%] Built target llama-server'), 1)
  assert.equal(parseProgressLine('-- Configuring done'), undefined)
  assert.equal(parseProgressLine('[0/0] nothing'), undefined)
})

test('the tracker only moves forward and estimates the time left from the rate so far', () => {
  const tracker = new BuildProgressTracker(0)
  assert.equal(tracker.update('[ 2%] a', 1000)?.etaSeconds, undefined, 'too early to estimate')
  assert.deepEqual(tracker.update('[ 25%] b', 60_000), { fraction: 0.25, etaSeconds: 180 })
  assert.equal(tracker.update('[ 14%] c (next target restarts the count)', 70_000), undefined)
  assert.deepEqual(tracker.update('[50/100] d', 120_000), { fraction: 0.5, etaSeconds: 120 })
})

test('formatDuration', () => {
  assert.equal(formatDuration(42), '42s')
  assert.equal(formatDuration(185), '3m05s')
})
