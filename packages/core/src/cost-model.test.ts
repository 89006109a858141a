import { test } from 'node:test'
import assert from 'node:assert/strict'
import { DEFAULT_RTT_MS, FIT_RESOLUTION, fitTokenCost, hopSeconds, LOCAL_HOP_SECONDS, reloadPays } from './cost-model.js'

test('a hop costs a loopback round trip on the host, twice the RTT plus overhead elsewhere', () => {
  assert.equal(hopSeconds(true, 5), LOCAL_HOP_SECONDS)
  assert.equal(hopSeconds(false, 1), 0.0004 + 0.002)
  assert.equal(hopSeconds(false, undefined), hopSeconds(false, DEFAULT_RTT_MS))
})

test('a re-plan must pay back its reload within the horizon', () => {
  const cases: Array<[current: number, desired: number, reload: number, pays: boolean]> = [
    [0.1, 0.1, 0, false], // same speed: never
    [0.1, 0.095, 0, false], // 5 % faster: noise
    [0.1, 0.09, 0, true], // 11 % faster and free to load: yes
    [0.1, 0.09, 60, false], // the same gain, but a minute without answers eats it
    [0.1, 0.05, 60, true], // twice as fast pays a minute back
    [0.1, 0.08, 120, false], // 1.25x, 2-minute load: no more tokens over 10 min
    [0.1, 0.07, 120, true], // 1.43x pays back a 2-minute load (1.375x is the bar)
    [0.1, 0.05, 600, false], // a reload as long as the horizon never pays
    [0.1, 0, 0, false], // nonsense in, no restart out
    [0, 0.1, 0, false]
  ]
  for (const [current, desired, reload, pays] of cases)
    assert.equal(
      reloadPays({ currentSecondsPerToken: current, desiredSecondsPerToken: desired, reloadSeconds: reload }),
      pays,
      `${current} -> ${desired}, ${reload} s`
    )
})

const MB = 2 ** 20
const near = (actual: number, expected: number, what: string): void =>
  assert.ok(Math.abs(actual - expected) <= Math.abs(expected) * 1e-9, `${what}: ${actual} != ${expected}`)

test('fitTokenCost recovers a linear device: a fixed part per token and a price per GiB', () => {
  const cost = (bytes: number): number => 0.0005 + (0.1 * bytes) / 2 ** 30
  const fit = fitTokenCost({ layerBytes: 27 * MB, secondsPerToken: cost(27 * MB) }, { layerBytes: 81 * MB, secondsPerToken: cost(81 * MB) })
  near(fit.secondsPerGiB, 0.1, 'per GiB')
  near(fit.fixedSecondsPerToken, 0.0005, 'fixed')
})

test('fitTokenCost: a GPU whose two sizes decode alike costs its time per token, and bytes at the resolution', () => {
  // 1 ms a token whatever it holds (launches, the round trip): one size alone priced it at 0.037 s/GiB, a CPU's price
  const small = { layerBytes: 27 * MB, secondsPerToken: 0.001 }
  const fit = fitTokenCost(small, { layerBytes: 81 * MB, secondsPerToken: 0.001005 })
  near(fit.secondsPerGiB, ((FIT_RESOLUTION * 0.001) / (54 * MB)) * 2 ** 30, 'per GiB at the resolution')
  assert.ok(fit.secondsPerGiB < 0.001, String(fit.secondsPerGiB))
  assert.ok(fit.secondsPerGiB * 30 < (small.secondsPerToken / small.layerBytes) * 2 ** 30)
  near(fit.fixedSecondsPerToken, 0.001 - (FIT_RESOLUTION * 0.001 * 27) / 54, 'fixed')
  // a large model that decodes faster (noise) is the same case
  assert.deepEqual(fitTokenCost(small, { layerBytes: 81 * MB, secondsPerToken: 0.0009 }), fit)
})

test('fitTokenCost: a small model that sat in a cache (a negative fixed part) is priced at the large one average', () => {
  const large = { layerBytes: 81 * MB, secondsPerToken: 0.006 }
  const average = { secondsPerGiB: (0.006 / (81 * MB)) * 2 ** 30, fixedSecondsPerToken: 0 }
  assert.deepEqual(fitTokenCost({ layerBytes: 27 * MB, secondsPerToken: 0.001 }, large), average)
  // two samples of one size tell nothing apart
  assert.deepEqual(fitTokenCost(large, large), average)
})
