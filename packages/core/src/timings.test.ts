import { test } from 'node:test'
import assert from 'node:assert/strict'
import { seededRandom } from './random.js'
import { announceRefreshDueMs, LAN_MESH_TIMINGS, mdnsQueryIntervalMs, type MeshTimings } from './timings.js'

/** Query times of agents started together at 0 (a query at start, then one per interval), up to `untilMs`. */
function queryTimes(intervals: number[], untilMs: number): number[] {
  return intervals.flatMap((every) => Array.from({ length: Math.floor(untilMs / every) + 1 }, (_, k) => k * every))
}

/** The most queries in any window of `windowMs` starting at or after `fromMs` (windows start at each query). */
function busiestWindow(times: number[], fromMs: number, windowMs: number): number {
  const after = times.filter((t) => t >= fromMs).sort((a, b) => a - b)
  return Math.max(...after.map((t) => after.filter((u) => u >= t && u < t + windowMs).length))
}

test('mDNS query periods are spread over half to one and a half of the preset period', () => {
  const T: MeshTimings = LAN_MESH_TIMINGS
  assert.equal(mdnsQueryIntervalMs(T, 0), T.mdnsIntervalMs / 2)
  assert.equal(mdnsQueryIntervalMs(T, 0.5), T.mdnsIntervalMs)
  assert.ok(mdnsQueryIntervalMs(T, 0.999999) <= T.mdnsIntervalMs * 1.5)
  // out-of-range input is clamped, never a zero or negative period
  assert.equal(mdnsQueryIntervalMs(T, -3), T.mdnsIntervalMs / 2)
  assert.equal(mdnsQueryIntervalMs(T, 7), T.mdnsIntervalMs * 1.5)
})

test('20 agents started together no longer query all in the same 15 s after their first round', () => {
  const n = 20
  const untilMs = 15 * 60_000
  const same = queryTimes(
    Array.from({ length: n }, () => LAN_MESH_TIMINGS.mdnsIntervalMs),
    untilMs
  )
  // the fixed period of @libp2p/mdns: every round is all 20 queries at once (each answered by all 20)
  assert.equal(busiestWindow(same, LAN_MESH_TIMINGS.mdnsIntervalMs, 15_000), n)
  for (const seed of [1, 2, 3, 4, 5]) {
    const random = seededRandom(seed)
    const intervals = Array.from({ length: n }, () => mdnsQueryIntervalMs(LAN_MESH_TIMINGS, random()))
    // after the shared start-up query, no 15 s of the next 15 minutes holds a whole round again (on average
    // a window holds 20 x 15 s / 300 s = 1 in both cases; seeds 1-30 gave a busiest window of 4-7 at 300 s,
    // 6-11 at 120 s)
    const busiest = busiestWindow(queryTimes(intervals, untilMs), 1, 15_000)
    assert.ok(busiest <= 12, `seed ${seed}: ${busiest} of ${n} queries in one 15 s window`)
  }
})

test('announcement refreshes are spread over half to all of the refresh period, never later', () => {
  const T = LAN_MESH_TIMINGS
  assert.equal(announceRefreshDueMs(T, 0), T.announceRefreshMs / 2)
  assert.equal(announceRefreshDueMs(T, 1), T.announceRefreshMs)
  assert.equal(announceRefreshDueMs(T, 9), T.announceRefreshMs)
  const random = seededRandom(7)
  const due = Array.from({ length: 20 }, () => announceRefreshDueMs(T, random()))
  assert.ok(due.every((ms) => ms >= T.announceRefreshMs / 2 && ms <= T.announceRefreshMs))
  // 20 agents that published together refresh over minutes, not in one 15 s window
  assert.ok(Math.max(...due) - Math.min(...due) > 60_000, `spread ${Math.max(...due) - Math.min(...due)} ms`)
})
