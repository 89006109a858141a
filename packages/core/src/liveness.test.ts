import { test } from 'node:test'
import assert from 'node:assert/strict'
import { encodeLivenessReport, parseLivenessReport, ringNeighbours, RING_PER_SIDE } from './liveness.js'
import { Membership } from './membership.js'
import { LAN_MESH_TIMINGS } from './timings.js'
import { testAnnouncement } from './test-announcement.js'

const T = LAN_MESH_TIMINGS
const ids = (n: number): string[] => Array.from({ length: n }, (_, i) => `p${String(i).padStart(2, '0')}`)
const types = (events: Array<{ type: string }>): string[] => events.map((e) => e.type)
const onRing = (id: string, over = {}) => testAnnouncement(id, { heartbeats: { ring: RING_PER_SIDE }, ...over })

test('the ring: up to five members everyone watches everyone; beyond, four neighbours each, the relation symmetric', () => {
  assert.deepEqual([...ringNeighbours('p00', ids(5))].sort(), ['p01', 'p02', 'p03', 'p04'])
  assert.deepEqual([...ringNeighbours('p00', ['p01'])], ['p01'])
  for (const n of [6, 20, 200]) {
    const all = ids(n)
    const watchers = new Map(all.map((id) => [id, 0]))
    for (const id of all) {
      const mine = ringNeighbours(id, all)
      assert.equal(mine.size, 4, `${id} of ${n}`)
      assert.ok(!mine.has(id))
      for (const other of mine) {
        assert.ok(ringNeighbours(other, all).has(id), `${id} watches ${other}, so ${other} watches ${id}`)
        watchers.set(other, (watchers.get(other) ?? 0) + 1)
      }
    }
    assert.ok(
      [...watchers.values()].every((w) => w === 4),
      `every member of ${n} has four watchers`
    )
  }
  assert.deepEqual([...ringNeighbours('p00', ids(20))].sort(), ['p01', 'p02', 'p18', 'p19'], 'the ring wraps')
})

test('a liveness report survives the wire; bad ones are refused in one line', () => {
  const report = { subject: 'p01', incarnation: 12, seq: 3, state: 'suspect' as const }
  assert.deepEqual(parseLivenessReport(encodeLivenessReport(report)), { ok: true, value: report })
  const bad = parseLivenessReport(new TextEncoder().encode('{"v":1,"subject":"p01","incarnation":-1,"seq":3,"state":"suspect"}'))
  assert.equal(bad.ok, false)
  assert.match(bad.ok ? '' : bad.reason, /^invalid: a liveness report/)
  const big = parseLivenessReport(new Uint8Array(5000))
  assert.match(big.ok ? '' : big.reason, /^too large: a liveness report of 5000 bytes, at most 1024/)
  assert.match((parseLivenessReport(new TextEncoder().encode('{')) as { reason: string }).reason, /not JSON/)
})

/** `self` in a ring of 10 (p00..p09), every member announced and connected at 0. */
function ringOfTen(self = 'p04'): Membership {
  const m = new Membership('default', self, T)
  for (const id of ids(10)) {
    if (id === self) continue
    m.onAnnouncement(onRing(id), 0)
    m.onConnected(id, 0)
  }
  return m
}

test('on a ring only the neighbours are beaten and watched: a silent non-neighbour stays alive until a watcher reports', () => {
  const m = ringOfTen()
  assert.deepEqual(m.watched(), ['p02', 'p03', 'p05', 'p06'])
  // a minute of beats from the neighbours only
  for (let t = T.announceIntervalMs; t <= 60_000; t += T.announceIntervalMs)
    for (const id of m.watched()) m.onHeartbeat(id, { incarnation: 1000, seq: 1 }, t)
  const at = m.list(60_000)
  assert.equal(at.length, 9)
  assert.ok(at.every((x) => x.status === 'alive'))
  assert.equal(at.find((x) => x.announcement.peerId === 'p08')?.lastHeard, 60_000, 'vouched for: as recent as now')
  assert.deepEqual(m.takeReports(), [])
})

test('a frozen neighbour is reported by its watcher: suspect, then gone; the ring closes over the gap', () => {
  const m = ringOfTen()
  const beat = (t: number, except: string[] = []): void => {
    for (const id of m.watched()) if (!except.includes(id)) m.onHeartbeat(id, { incarnation: 1000, seq: 1 }, t)
  }
  beat(1000)
  assert.deepEqual(m.tick(1000 + T.silenceSuspectMs - 1), [])
  beat(1000 + T.silenceSuspectMs - 1, ['p05'])
  assert.deepEqual(m.tick(1000 + T.silenceSuspectMs), [{ type: 'member:suspect', peerId: 'p05' }])
  assert.deepEqual(m.takeReports(), [{ subject: 'p05', incarnation: 1000, seq: 1, state: 'suspect' }])
  beat(1000 + T.silenceGoneMs - 1, ['p05'])
  const left = m.tick(1000 + T.silenceGoneMs)
  assert.deepEqual(left, [{ type: 'member:left', peerId: 'p05', reason: 'silent' }])
  assert.deepEqual(m.takeReports(), [{ subject: 'p05', incarnation: 1000, seq: 1, state: 'gone' }])
  // the next one along is watched now, its silence counted from now (not from 0: no false alarm)
  assert.deepEqual(m.watched(), ['p02', 'p03', 'p06', 'p07'])
  assert.equal(m.list(1000 + T.silenceGoneMs + T.silenceSuspectMs - 1).find((x) => x.announcement.peerId === 'p07')?.status, 'alive')
})

test('a neighbour that recovers is reported alive again; a closed connection is never reported (everyone sees it)', () => {
  const m = ringOfTen()
  m.tick(T.silenceSuspectMs)
  assert.equal(m.takeReports().length, 4, 'all four neighbours silent: four suspect reports')
  m.onHeartbeat('p05', { incarnation: 1000, seq: 1 }, T.silenceSuspectMs + 100)
  assert.deepEqual(m.takeReports(), [{ subject: 'p05', incarnation: 1000, seq: 1, state: 'alive' }])
  const n = ringOfTen()
  n.onDisconnected('p05', 100)
  n.tick(100 + T.disconnectGoneMs)
  assert.deepEqual(
    n.takeReports().filter((r) => r.subject === 'p05'),
    []
  )
})

test("reports are taken from the subject's watchers only, about the announcement held or a newer one; about us they ask for a refutation", () => {
  const m = ringOfTen('p04')
  // p08's watchers: p06, p07, p09, p00 (p05 and p01 are one further: tolerated while views differ by a join)
  assert.equal(m.onReport('p02', { subject: 'p08', incarnation: 1000, seq: 1, state: 'gone' }, 10).taken, false, 'not a watcher of p08')
  assert.equal(
    m.onReport('p07', { subject: 'p08', incarnation: 1000, seq: 0, state: 'gone' }, 10).taken,
    false,
    'about an older announcement'
  )
  assert.equal(m.onReport('p07', { subject: 'p05', incarnation: 1000, seq: 1, state: 'gone' }, 10).taken, false, 'we watch p05 ourselves')
  const suspect = m.onReport('p07', { subject: 'p08', incarnation: 1000, seq: 1, state: 'suspect' }, 10)
  assert.equal(suspect.taken, true)
  assert.deepEqual(suspect.events, [{ type: 'member:suspect', peerId: 'p08' }])
  assert.equal(m.list(10 + T.silenceGoneMs - 1).find((x) => x.announcement.peerId === 'p08')?.status, 'suspect')
  assert.equal(m.list(10 + T.silenceGoneMs).find((x) => x.announcement.peerId === 'p08')?.status, 'alive', 'a report expires')
  // a newer announcement (the subject refuted) clears it, and makes reports about the older one stale
  m.onAnnouncement(onRing('p08', { seq: 2 }), 20)
  assert.equal(m.list(30).find((x) => x.announcement.peerId === 'p08')?.status, 'alive')
  assert.equal(m.onReport('p09', { subject: 'p08', incarnation: 1000, seq: 1, state: 'gone' }, 40).taken, false)
  const gone = m.onReport('p09', { subject: 'p08', incarnation: 1000, seq: 2, state: 'gone' }, 50)
  assert.deepEqual(gone.events.slice(0, 1), [{ type: 'member:left', peerId: 'p08', reason: 'silent' }])
  assert.equal(m.get('p08'), undefined)
  assert.deepEqual(m.onReport('p03', { subject: 'p04', incarnation: 1, seq: 1, state: 'suspect' }, 60), {
    taken: false,
    refute: true,
    events: []
  })
  assert.equal(m.onReport('p03', { subject: 'p04', incarnation: 1, seq: 1, state: 'alive' }, 60).refute, false)
})

test('members of the previous release (no ring) are watched by everyone and never reported; the ring is among the others', () => {
  const m = new Membership('default', 'p04', T)
  for (const id of ids(10)) if (id !== 'p04') m.onAnnouncement(id === 'p08' ? testAnnouncement(id) : onRing(id), 0)
  for (const id of ids(10)) if (id !== 'p04') m.onConnected(id, 0)
  assert.deepEqual(m.watched(), ['p02', 'p03', 'p05', 'p06', 'p08'])
  m.tick(T.silenceSuspectMs)
  assert.deepEqual(
    m.takeReports().map((r) => r.subject),
    ['p02', 'p03', 'p05', 'p06']
  )
  assert.equal(m.onReport('p07', { subject: 'p08', incarnation: 1000, seq: 1, state: 'gone' }, 10).taken, false)
})

test('a member nobody reports on and that sends nothing for two refreshes goes (its watchers vanished with it)', () => {
  const m = new Membership('default', 'p04', T)
  for (const id of ids(10)) if (id !== 'p04') m.onAnnouncement(onRing(id), 0)
  for (const id of ids(10)) if (id !== 'p04') m.onConnected(id, 0)
  const bound = 2 * T.announceRefreshMs + T.silenceGoneMs
  for (let t = 1000; t < bound; t += 1000) for (const id of m.watched()) m.onHeartbeat(id, { incarnation: 1000, seq: 1 }, t)
  // the slow refresh (the same announcement again) is a sign of life
  m.onAnnouncement(onRing('p09'), T.announceRefreshMs)
  const left = m
    .tick(bound)
    .filter((e) => e.type === 'member:left')
    .map((e) => e.peerId)
  assert.deepEqual(left, ['p00', 'p01', 'p07', 'p08'])
  assert.equal(m.list(bound).find((x) => x.announcement.peerId === 'p09')?.status, 'alive')
})

test('after this agent itself stalled, the members it watches get a fresh window instead of being reported gone', () => {
  const m = ringOfTen()
  m.afterStall(T.silenceGoneMs + 5000)
  assert.deepEqual(m.tick(T.silenceGoneMs + 5000), [])
  assert.deepEqual(m.takeReports(), [])
  assert.deepEqual(types(m.tick(2 * T.silenceGoneMs + 5000)).filter((t) => t === 'member:left').length, 4, 'silent since: gone')
})
