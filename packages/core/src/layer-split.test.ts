import { test } from 'node:test'
import assert from 'node:assert/strict'
import { expectedLayerDevices, layersPerDevice, tensorSplitForLayerCounts } from './layer-split.js'

test('expectedLayerDevices reproduces what llama-server logged for -ts 1,2,1 on 8 layers', () => {
  // Measured: layers 0-2 on RPC0, 3-6 on RPC1, 7 and the output (8) on RPC2.
  assert.deepEqual(expectedLayerDevices([1, 2, 1], 8), [0, 0, 0, 1, 1, 1, 1, 2, 2])
})

test('expectedLayerDevices with -ngl below all keeps the first layers on the host CPU', () => {
  assert.deepEqual(expectedLayerDevices([1, 1], 4, 3), ['cpu', 'cpu', 0, 0, 1])
  assert.deepEqual(expectedLayerDevices([1], 4, 0), ['cpu', 'cpu', 'cpu', 'cpu', 'cpu'])
})

test('tensorSplitForLayerCounts gives each device exactly its layer count', () => {
  const cases: number[][] = [[2, 5, 1], [8], [1, 1, 1, 1, 1, 1, 1, 1], [0, 4, 4], [3, 0, 5], [31, 1, 32], [10, 20, 30, 40]]
  for (const counts of cases) {
    const total = counts.reduce((a, b) => a + b, 0)
    const devices = expectedLayerDevices(tensorSplitForLayerCounts(counts), total)
    assert.deepEqual(layersPerDevice(devices, counts.length).perDevice, counts, `counts ${counts.join(',')}`)
    assert.equal(devices[total], counts.length - 1, 'the output layer goes to the last device')
  }
})

test('layersPerDevice counts host layers apart', () => {
  assert.deepEqual(layersPerDevice(['cpu', 0, 1, 1, 1], 2), { perDevice: [1, 2], cpu: 1 })
})

test('tensorSplitForLayerCounts puts the output on a device before trailing unused ones', () => {
  // e.g. the last rpc-server lists Vulkan0 then CPU, and only Vulkan0 is planned (with the output)
  const cases: Array<[number[], number]> = [
    [[3, 5, 0], 1],
    [[4, 0, 0], 0],
    [[0, 2, 6, 0, 0], 2],
    [[1, 0, 7, 0], 2]
  ]
  for (const [counts, output] of cases) {
    const total = counts.reduce((a, b) => a + b, 0)
    const devices = expectedLayerDevices(tensorSplitForLayerCounts(counts, output), total)
    assert.deepEqual(layersPerDevice(devices, counts.length).perDevice, counts, `counts ${counts.join(',')}`)
    assert.equal(devices[total], output, `the output layer goes to device ${output}`)
  }
  assert.throws(() => tensorSplitForLayerCounts([2, 2, 1], 1), /after the output device/)
})
