import { test } from 'node:test'
import assert from 'node:assert/strict'
import { toFloat16Bits } from './writer.js'

test('toFloat16Bits matches IEEE binary16 for representative values', () => {
  const table: Array<[number, number]> = [
    [0, 0x0000],
    [-0, 0x8000],
    [1, 0x3c00],
    [-2, 0xc000],
    [0.5, 0x3800],
    [65504, 0x7bff], // largest finite half
    [65520, 0x7c00], // rounds up to infinity
    [Infinity, 0x7c00],
    [-Infinity, 0xfc00],
    [2 ** -24, 0x0001], // smallest subnormal
    [2 ** -14, 0x0400], // smallest normal
    [1 + 2 ** -11, 0x3c00], // halfway: ties to even (down)
    [1 + 3 * 2 ** -11, 0x3c02] // halfway: ties to even (up)
  ]
  for (const [value, bits] of table) assert.equal(toFloat16Bits(value), bits, `f16(${value})`)
  assert.equal(toFloat16Bits(NaN) & 0x7c00, 0x7c00)
  assert.notEqual(toFloat16Bits(NaN) & 0x3ff, 0)
})
