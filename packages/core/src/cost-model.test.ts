import { test } from 'node:test'
import assert from 'node:assert/strict'
import { DEFAULT_RTT_MS, hopSeconds, LOCAL_HOP_SECONDS, reloadPays } from './cost-model.js'

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
