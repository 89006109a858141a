import { test } from 'node:test'
import assert from 'node:assert/strict'
import {
  calibrationShapeOf,
  calibrationTypeOf,
  modelShapeOf,
  planningSpeeds,
  shapedPricing,
  SHAPED_CALIBRATION_ABOVE_BYTES
} from './calibration-shape.js'

const MiB = 2 ** 20
const GiB = 2 ** 30
const cpu = { cacheBytes: 32 * MiB, offerBytes: 16 * GiB }

test('a model that fits the caches the generic calibration runs from is not measured again', () => {
  assert.equal(calibrationShapeOf({ embd: 256, ff: 512, type: 'f32', layerBytes: 40 * MiB }, cpu), null)
  assert.equal(calibrationShapeOf({ embd: 4096, ff: 14336, type: 'q4_k', layerBytes: SHAPED_CALIBRATION_ABOVE_BYTES }, cpu), null)
})

test("the calibration copies the model's width and weight type, and outgrows the last-level cache", () => {
  // the placement bench's model: 16 layers of 768 wide, f16
  const bench = calibrationShapeOf({ embd: 768, ff: 2048, type: 'f16', layerBytes: 226 * MiB }, cpu)
  assert.ok(bench !== null)
  assert.equal(bench.key, '768x2048-f16')
  assert.equal(bench.heads * 128, 768)
  assert.ok(bench.smallLayers * bench.layerBytes >= 64 * MiB, 'the small model outgrows twice the cache')
  assert.equal(bench.largeLayers, 3 * bench.smallLayers)
  // a bigger cache: a bigger small model
  const bigCache = calibrationShapeOf({ embd: 768, ff: 2048, type: 'f16', layerBytes: 226 * MiB }, { ...cpu, cacheBytes: 128 * MiB })
  assert.ok(bigCache !== null && bigCache.smallLayers * bigCache.layerBytes >= 256 * MiB)
})

test('a 70B-shaped layer: one and two of them, under the size cap; none when a layer does not fit the offer', () => {
  const llama70 = { embd: 8192, ff: 28672, type: 'q4_k', layerBytes: 38 * GiB }
  const shape = calibrationShapeOf(llama70, cpu)
  assert.ok(shape !== null)
  assert.equal(shape.smallLayers, 1)
  assert.equal(shape.largeLayers, 2) // a layer of ~550 MB: three would pass the cap
  assert.ok(shape.largeLayers * shape.layerBytes <= 1.5 * GiB, `${shape.largeLayers} x ${shape.layerBytes}`)
  // a device offering 1 GiB: three quarters of it hold one layer, so one size
  const small = calibrationShapeOf(llama70, { cacheBytes: 0, offerBytes: GiB })
  assert.ok(small !== null)
  assert.deepEqual([small.smallLayers, small.largeLayers], [1, 1])
  assert.equal(calibrationShapeOf(llama70, { cacheBytes: 0, offerBytes: GiB / 2 }), null)
})

test('widths round up to whole blocks and heads of 128; unknown types map to the nearest in bytes per weight', () => {
  const odd = calibrationShapeOf({ embd: 2880, ff: 2880, type: 'q8_0', layerBytes: GiB }, cpu)
  assert.ok(odd !== null)
  assert.deepEqual([odd.embd, odd.ff, odd.heads], [3072, 3072, 24])
  assert.equal(calibrationTypeOf('bf16'), 'f16')
  assert.equal(calibrationTypeOf('iq4_nl'), 'q4_0')
  assert.equal(calibrationTypeOf('[23]'), 'q4_k')
  assert.equal(calibrationTypeOf('q6_k'), 'q6_k')
})

test("a model holder's shape from its header: the widest feed-forward, every layer's bytes", () => {
  assert.deepEqual(
    modelShapeOf({ embeddingLength: 4096, feedForwardWidth: 14336, layerWeightType: 'q4_k', layerWeightBytes: [100, 200] }),
    { embd: 4096, ff: 14336, type: 'q4_k', layerBytes: 300, layers: 2 }
  )
  assert.equal(modelShapeOf({ embeddingLength: 64, layerWeightType: 'f32', layerWeightBytes: [] }).ff, 256)
})

test('a plan is priced in the model shape only when every candidate measured in it; one basis for all', () => {
  const shape = { embd: 768, ff: 2048, type: 'f16', layerBytes: 226 * MiB }
  const generic = (s: number): { secondsPerGiB: number; measuredAt: string; method: string } => ({
    secondsPerGiB: s,
    measuredAt: '',
    method: 'generic'
  })
  const inShape = (key: string, s: number): { shape: string; speed: ReturnType<typeof generic>; devices: [] } => ({
    shape: key,
    speed: generic(s),
    devices: []
  })
  const a = { memoryBudget: GiB, speed: generic(0.01), modelSpeed: inShape('768x2048-f16', 0.04), devices: [] }
  const b = { memoryBudget: GiB, speed: generic(0.02), modelSpeed: inShape('768x2048-f16', 0.05), devices: [] }
  const older = { memoryBudget: GiB, speed: generic(0.03), modelSpeed: undefined, devices: [] }
  const other = { memoryBudget: GiB, speed: generic(0.03), modelSpeed: inShape('1024x2816-q4_k', 0.02), devices: [] }
  // offers less than a layer (the model holders of warm-failover.test.ts): holds none, so not asked for
  const tiny = { memoryBudget: 10 * MiB, speed: generic(0.03), modelSpeed: undefined, devices: [] }
  assert.equal(shapedPricing(shape, [a, b]), '768x2048-f16')
  assert.equal(shapedPricing(shape, [a, b, older]), null)
  assert.equal(shapedPricing(shape, [a, b, tiny]), '768x2048-f16')
  assert.equal(shapedPricing(shape, [tiny]), null)
  assert.equal(shapedPricing(shape, [a, other]), null)
  assert.equal(shapedPricing({ ...shape, layerBytes: 40 * MiB }, [a, b]), null, 'a small model: the generic calibration')
  assert.equal(shapedPricing(undefined, [a, b]), null)
  assert.equal(planningSpeeds(a, '768x2048-f16').speed?.secondsPerGiB, 0.04)
  assert.equal(planningSpeeds(a, null).speed?.secondsPerGiB, 0.01)
  // devices take their own measurement in the shape, by position
  const twoDevices = {
    speed: generic(0.01),
    modelSpeed: { shape: '768x2048-f16', speed: generic(0.04), devices: [generic(0.4), null] },
    devices: [
      { name: 'Vulkan0', speed: generic(8) },
      { name: 'CPU', speed: generic(0.01) }
    ]
  }
  assert.deepEqual(
    planningSpeeds(twoDevices, '768x2048-f16').devices.map((d) => d.speed?.secondsPerGiB ?? null),
    [0.4, null]
  )
  assert.deepEqual(
    planningSpeeds(twoDevices, null).devices.map((d) => d.speed?.secondsPerGiB),
    [8, 0.01]
  )
})
