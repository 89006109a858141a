import { test } from 'node:test'
import assert from 'node:assert/strict'
import { testAnnouncement } from './test-announcement.js'
import { Membership } from './membership.js'
import { LAN_MESH_TIMINGS, FAST_MESH_TIMINGS } from './timings.js'
import { parseAnnouncement, encodeAnnouncement, speaksWith } from './announcement.js'

const T = LAN_MESH_TIMINGS

const announcement = testAnnouncement

const types = (events: Array<{ type: string }>): string[] => events.map((e) => e.type)

test('a new announcement joins; an older or equal one never overwrites a newer one', () => {
  const m = new Membership('default', 'self', T)
  assert.deepEqual(types(m.onAnnouncement(announcement('a', { seq: 5 }), 0).events), ['member:joined'])
  assert.equal(m.onAnnouncement(announcement('a', { seq: 4, hostname: 'old' }), 10).verdict, 'stale')
  assert.equal(m.onAnnouncement(announcement('a', { seq: 5, hostname: 'same' }), 10).verdict, 'stale')
  assert.equal(m.get('a')?.announcement.hostname, 'host-a')
  // A restart has a higher incarnation: its seq starts again at 1 and still wins.
  assert.equal(m.onAnnouncement(announcement('a', { incarnation: 2000, seq: 1, hostname: 'new' }), 20).verdict, 'applied')
  assert.equal(m.get('a')?.announcement.hostname, 'new')
})

test('announcements of another cluster and about ourselves are ignored', () => {
  const m = new Membership('default', 'self', T)
  assert.equal(m.onAnnouncement(announcement('b', { cluster: 'other' }), 0).verdict, 'other-cluster')
  assert.equal(m.onAnnouncement(announcement('self'), 0).verdict, 'self')
  assert.deepEqual(m.list(0), [])
})

test('a killed peer (connection closed) is suspect at once and gone after the disconnect grace', () => {
  const m = new Membership('default', 'self', T)
  m.onAnnouncement(announcement('a'), 0)
  m.onConnected('a', 0)
  assert.deepEqual(types(m.onDisconnected('a', 1000)), ['member:suspect'])
  assert.equal(m.list(1000)[0]?.status, 'suspect')
  assert.deepEqual(m.tick(1000 + T.disconnectGoneMs - 1), [])
  assert.deepEqual(m.tick(1000 + T.disconnectGoneMs), [{ type: 'member:left', peerId: 'a', reason: 'disconnected' }])
  assert.deepEqual(m.list(1000 + T.disconnectGoneMs), [])
  assert.ok(1000 + T.disconnectGoneMs < 5000, 'within the 5 s bound')
})

test('a reconnect within the grace keeps the peer, with no leave', () => {
  const m = new Membership('default', 'self', T)
  m.onAnnouncement(announcement('a'), 0)
  m.onConnected('a', 0)
  m.onDisconnected('a', 100)
  assert.deepEqual(types(m.onConnected('a', 600)), ['member:alive'])
  assert.deepEqual(m.tick(100 + T.disconnectGoneMs + 1), [])
})

test('a frozen peer (connection open, silent) turns suspect, then gone within the 10 s bound', () => {
  const m = new Membership('default', 'self', T)
  m.onAnnouncement(announcement('a'), 0)
  m.onConnected('a', 0)
  assert.deepEqual(m.tick(T.silenceSuspectMs - 1), [])
  assert.deepEqual(types(m.tick(T.silenceSuspectMs)), ['member:suspect'])
  assert.deepEqual(m.tick(T.silenceGoneMs), [{ type: 'member:left', peerId: 'a', reason: 'silent' }])
  assert.ok(T.silenceGoneMs <= 10_000)
})

test('heartbeats keep a member alive without announcements; a newer seq says we are behind, an older one counts for nothing', () => {
  const m = new Membership('default', 'self', T)
  m.onAnnouncement(announcement('a', { incarnation: 1000, seq: 3 }), 0)
  m.onConnected('a', 0)
  const events: string[] = []
  for (let t = T.announceIntervalMs; t < 600_000; t += T.announceIntervalMs) {
    const beat = m.onHeartbeat('a', { incarnation: 1000, seq: 3 }, t)
    assert.equal(beat.behind, false)
    events.push(...types(beat.events))
  }
  assert.deepEqual(events, [], 'ten minutes of heartbeats alone: never suspect, never gone')
  assert.equal(m.list(600_000)[0]?.status, 'alive')

  assert.equal(m.onHeartbeat('a', { incarnation: 1000, seq: 4 }, 600_100).behind, true, 'a change we missed')
  assert.equal(m.onHeartbeat('a', { incarnation: 2000, seq: 1 }, 600_200).behind, true, 'a restart we missed')
  assert.equal(m.onHeartbeat('b', { incarnation: 1000, seq: 1 }, 600_300).behind, true, 'a peer we hold nothing of')
  assert.equal(m.onHeartbeat('self', { incarnation: 1000, seq: 1 }, 600_300).behind, false)

  // a beat older than the announcement held is no sign of life for it
  const stale = new Membership('default', 'self', T)
  stale.onAnnouncement(announcement('a', { incarnation: 1000, seq: 3 }), 0)
  stale.onConnected('a', 0)
  assert.equal(stale.onHeartbeat('a', { incarnation: 1000, seq: 2 }, T.silenceSuspectMs - 1).behind, false)
  assert.deepEqual(types(stale.tick(T.silenceSuspectMs)), ['member:suspect'])
})

test('a peer that keeps announcing stays alive however long it runs', () => {
  const m = new Membership('default', 'self', T)
  m.onConnected('a', 0)
  const events: string[] = []
  for (let t = 0, seq = 1; t < 3_600_000; t += T.announceIntervalMs, seq++) {
    events.push(...types(m.onAnnouncement(announcement('a', { seq }), t).events))
  }
  assert.equal(events.filter((e) => e !== 'member:updated' && e !== 'member:joined').length, 0)
  assert.equal(m.list(3_600_000)[0]?.status, 'alive')
})

test('a suspect peer that speaks again is alive again', () => {
  const m = new Membership('default', 'self', FAST_MESH_TIMINGS)
  m.onAnnouncement(announcement('a', { seq: 1 }), 0)
  m.tick(FAST_MESH_TIMINGS.silenceSuspectMs)
  assert.deepEqual(types(m.onAnnouncement(announcement('a', { seq: 2 }), FAST_MESH_TIMINGS.silenceSuspectMs + 10).events), [
    'member:updated',
    'member:alive'
  ])
})

test('parseAnnouncement accepts a valid one and names what is wrong otherwise', () => {
  const ok = parseAnnouncement(encodeAnnouncement(announcement('a')))
  assert.equal(ok.ok, true)
  const bad = (value: unknown): string => {
    const result = parseAnnouncement(new TextEncoder().encode(JSON.stringify(value)))
    assert.equal(result.ok, false)
    return result.ok ? '' : result.reason
  }
  assert.match(bad({ ...announcement('a'), memoryBudget: -1 }), /memoryBudget/)
  assert.match(bad({ ...announcement('a'), memoryBudget: 1e30 }), /memoryBudget/)
  assert.match(bad({ ...announcement('a'), seq: 'x' }), /seq/)
  assert.match(bad({ ...announcement('a'), v: 2 }), /incompatible/)
  assert.match(bad({ ...announcement('a'), hostname: 'x'.repeat(10_000) }), /hostname/)
  assert.equal(parseAnnouncement(new Uint8Array([0xff, 0xfe])).ok, false)
  assert.equal(parseAnnouncement(new Uint8Array(70_000)).ok, false)
})

test('version policy: unknown fields of a newer release are accepted and kept; another major version is named, not parsed', () => {
  const a = announcement('a')
  const newer = { ...a, wire: { min: 1, max: 2 }, future: { x: 1 }, rpc: { ...a.rpc, futureRpc: 'y' } }
  const ok = parseAnnouncement(new TextEncoder().encode(JSON.stringify(newer)))
  assert.ok(ok.ok)
  // kept on the object (a view served to a newer agent still has them); never in the types, so never read
  assert.deepEqual((ok.value as unknown as { future: unknown }).future, { x: 1 })
  assert.equal((ok.value.rpc as unknown as { futureRpc: unknown }).futureRpc, 'y')

  const other = parseAnnouncement(new TextEncoder().encode(JSON.stringify({ ...a, v: 2, wire: { min: 2, max: 3 }, rpc: 'changed' })))
  assert.equal(other.ok, false)
  assert.deepEqual(other.ok ? undefined : other.incompatible, {
    peerId: 'a',
    cluster: a.cluster,
    hostname: a.hostname,
    agentVersion: a.agentVersion,
    v: 2,
    wire: { min: 2, max: 3 }
  })
  // garbage with a high version is garbage: no envelope, nothing shown
  const junk = parseAnnouncement(new TextEncoder().encode(JSON.stringify({ v: 2, peerId: 'a' })))
  assert.equal(junk.ok, false)
  assert.equal(junk.ok ? undefined : junk.incompatible, undefined)
  assert.equal(speaksWith({ min: 1, max: 1 }, { min: 1, max: 2 }), true)
  assert.equal(speaksWith({ min: 1, max: 1 }, { min: 2, max: 3 }), false)
})

test('1,000 joins and leaves (killed, frozen, or never connected and silent) leave no per-peer state behind', () => {
  const m = new Membership('default', 'self', T)
  let now = 0
  for (let i = 0; i < 1000; i++) {
    const id = `peer-${String(i).padStart(4, '0')}`
    m.onAnnouncement(testAnnouncement(id, { heartbeats: { ring: 2 } }), now)
    // a third were only heard of through gossip, never connected
    if (i % 3 !== 2) m.onConnected(id, now)
    now += 10
    m.tick(now)
    if (i % 3 === 0) {
      // killed: its connection closed
      m.onDisconnected(id, now)
      now += T.disconnectGoneMs + 1
    } else {
      // frozen (connected, silent), or silent and never connected
      now += T.silenceGoneMs + 1
    }
    m.tick(now)
    m.takeReports()
    assert.equal(m.list(now).length, 0, `peer ${i} left`)
    assert.equal(m.trackedPeers(), 0, `nothing kept of peer ${i}`)
  }
})
