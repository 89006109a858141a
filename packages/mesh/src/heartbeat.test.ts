import { test } from 'node:test'
import assert from 'node:assert/strict'
import { BEAT_BYTES, decodeBeat, encodeBeat } from './heartbeat.js'

test('a heartbeat is 16 bytes that decode to what was encoded; anything else is refused', () => {
  const bytes = encodeBeat(1_796_000_000_123, 42)
  assert.equal(bytes.byteLength, BEAT_BYTES)
  assert.deepEqual(decodeBeat(bytes), { incarnation: 1_796_000_000_123, seq: 42 })
  // a view into a larger buffer (as a stream hands it over) decodes the same
  const framed = new Uint8Array(20)
  framed.set(bytes, 3)
  assert.deepEqual(decodeBeat(framed.subarray(3, 19)), { incarnation: 1_796_000_000_123, seq: 42 })
  assert.equal(decodeBeat(bytes.subarray(0, 15)), undefined, 'too short')
  assert.equal(decodeBeat(new Uint8Array(17)), undefined, 'too long')
  assert.equal(decodeBeat(encodeBeat(-1, 1)), undefined, 'negative')
  assert.equal(decodeBeat(encodeBeat(1.5, 1)), undefined, 'not an integer')
  assert.equal(decodeBeat(encodeBeat(1, Number.NaN)), undefined, 'not a number')
  assert.equal(decodeBeat(encodeBeat(2 ** 60, 1)), undefined, 'beyond safe integers')
})
