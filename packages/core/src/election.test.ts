import { test } from 'node:test'
import assert from 'node:assert/strict'
import { testAnnouncement } from './test-announcement.js'
import { clusterModel, Election, MAX_TERM, rankCandidates, type ElectionTimings } from './election.js'
import type { Announcement } from './announcement.js'

const T: ElectionTimings = { settleMs: 1000, claimStaggerMs: 500, startupQuietMs: 2000 }

function node(peerId: string, over: Partial<Announcement> = {}): Announcement {
  return testAnnouncement(peerId, {
    incarnation: 1,
    hostname: peerId,
    addresses: [],
    rpc: { host: '10.0.0.1', port: 50052, protocol: '6.0.0', state: 'ready', llamaBuild: 'b1', servingTerm: 0, access: 'direct' },
    devices: [{ kind: 'cpu', name: 'CPU', memoryTotal: 8e9, memoryFree: 8e9 }],
    models: [{ name: 'm.gguf', size: 100, id: 'aaaaaaaaaaaaaaaa' }],
    canCoordinate: true,
    apiPort: 7491,
    ...over
  })
}

test('ranking prefers accelerators, then measured speed, then memory, then the lower peer id', () => {
  const gpu = node('z', { devices: [{ kind: 'cuda', name: 'GPU', memoryTotal: 24e9, memoryFree: 24e9 }] })
  const fast = node('y', { speed: { secondsPerGiB: 0.5, measuredAt: '', method: '' } })
  const slow = node('x', { speed: { secondsPerGiB: 2, measuredAt: '', method: '' } })
  const bigA = node('b', { memoryBudget: 9e9 })
  const bigB = node('a', { memoryBudget: 9e9 })
  const noModel = node('c', { models: [] })
  const cannot = node('d', { canCoordinate: false })
  assert.deepEqual(
    rankCandidates([slow, bigA, noModel, fast, gpu, bigB, cannot], 'aaaaaaaaaaaaaaaa').map((a) => a.peerId),
    ['z', 'y', 'x', 'a', 'b']
  )
})

test('the cluster model is the one most coordinate-capable nodes hold', () => {
  const other = { name: 'o.gguf', size: 1, id: 'bbbbbbbbbbbbbbbb' }
  assert.equal(
    clusterModel([
      node('a'),
      node('b', { models: [other] }),
      node('c', { models: [other] }),
      node('d', { models: [other], canCoordinate: false })
    ])?.id,
    'bbbbbbbbbbbbbbbb'
  )
  assert.equal(clusterModel([node('a', { canCoordinate: false })]), undefined)
})

test('with no coordinator the best candidate claims after the start-up quiet period and settles before acting', () => {
  const e = new Election('a', T, 0)
  const alive = new Set(['a', 'b'])
  assert.equal(e.decide(alive, ['a', 'b'], 1000).role, 'observing')
  const claim = e.decide(alive, ['a', 'b'], 2000)
  assert.deepEqual(claim, { role: 'settling', claimTerm: 1, coordinator: { peerId: 'a', term: 1 } })
  assert.equal(e.decide(alive, ['a', 'b'], 2999).role, 'settling')
  assert.equal(e.decide(alive, ['a', 'b'], 3000).role, 'coordinator')
  assert.equal(e.decide(alive, ['a', 'b'], 3000).claimTerm, undefined, 'one claim per term')
})

test('the second candidate waits one stagger, and claims only if the best stays silent', () => {
  const e = new Election('b', T, 0)
  const alive = new Set(['a', 'b'])
  assert.equal(e.decide(alive, ['a', 'b'], 2000).role, 'waiting')
  assert.equal(e.decide(alive, ['a', 'b'], 2499).role, 'waiting')
  // the best one claims in time: b follows
  e.observe({ peerId: 'a', coordinator: { peerId: 'a', term: 1 } }, 2400)
  assert.deepEqual(e.decide(alive, ['a', 'b'], 2500), { role: 'follower', coordinator: { peerId: 'a', term: 1 } })
  // a silent best candidate: b claims after one stagger
  const f = new Election('b', T, 0)
  f.decide(alive, ['a', 'b'], 2000)
  assert.equal(f.decide(alive, ['a', 'b'], 2500).claimTerm, 1)
})

test('the incumbent keeps the role when a better node joins', () => {
  const e = new Election('b', T, 0)
  e.observe({ peerId: 'b', coordinator: { peerId: 'b', term: 3 } }, 0)
  assert.equal(e.decide(new Set(['a', 'b']), ['a', 'b'], 10_000).role, 'coordinator')
})

test('a dead coordinator is replaced with a higher term; older terms are ignored', () => {
  const e = new Election('b', T, 0)
  e.observe({ peerId: 'a', coordinator: { peerId: 'a', term: 4 } }, 100)
  assert.equal(e.decide(new Set(['a', 'b']), ['a', 'b'], 5000).role, 'follower')
  const d = e.decide(new Set(['b']), ['b'], 5100)
  assert.deepEqual(d, { role: 'settling', claimTerm: 5, coordinator: { peerId: 'b', term: 5 } })
  // the old coordinator comes back claiming its old term: ignored
  assert.equal(e.observe({ peerId: 'a', coordinator: { peerId: 'a', term: 4 } }, 5200), false)
  assert.equal(e.decide(new Set(['a', 'b']), ['a', 'b'], 7000).role, 'coordinator')
})

test('a claimant that no one could contest acts at its next decision; a suspect rival still makes it settle', () => {
  const alone = new Election('b', T, 0)
  alone.observe({ peerId: 'a', coordinator: { peerId: 'a', term: 4 } }, 100)
  // the coordinator a is gone; b is the only model holder left
  assert.equal(alone.decide(new Set(['b', 'c']), ['b'], 5000, ['b']).claimTerm, 5)
  assert.equal(alone.decide(new Set(['b', 'c']), ['b'], 5250, ['b']).role, 'coordinator', 'no settle period')
  // d holds the model too but is suspect (slow, not gone): it may claim term 5 as well, so b settles
  const rival = new Election('b', T, 0)
  rival.observe({ peerId: 'a', coordinator: { peerId: 'a', term: 4 } }, 100)
  assert.equal(rival.decide(new Set(['b', 'd']), ['b'], 5000, ['b', 'd']).claimTerm, 5)
  assert.equal(rival.decide(new Set(['b', 'd']), ['b'], 5250, ['b', 'd']).role, 'settling')
  assert.equal(rival.decide(new Set(['b', 'd']), ['b'], 5000 + T.settleMs, ['b', 'd']).role, 'coordinator')
})

test('two claims of one term: the lower peer id wins on every node, and the loser steps down', () => {
  const onB = new Election('b', T, 0)
  onB.decide(new Set(['a', 'b']), ['b', 'a'], 2000) // b claims term 1
  onB.observe({ peerId: 'a', coordinator: { peerId: 'a', term: 1 } }, 2100)
  assert.deepEqual(onB.decide(new Set(['a', 'b']), ['b', 'a'], 4000), { role: 'follower', coordinator: { peerId: 'a', term: 1 } })
  const onC = new Election('c', T, 0)
  onC.observe({ peerId: 'b', coordinator: { peerId: 'b', term: 1 } }, 2000)
  onC.observe({ peerId: 'a', coordinator: { peerId: 'a', term: 1 } }, 2100)
  onC.observe({ peerId: 'b', coordinator: { peerId: 'b', term: 1 } }, 2200)
  assert.equal(onC.coordinator, 'a')
})

test('a restarted node learns the term from hearsay and claims above it', () => {
  const e = new Election('b', T, 0)
  // only followers speak (the coordinator they name is dead): their belief still raises the bar
  e.observe({ peerId: 'c', coordinator: { peerId: 'a', term: 7 } }, 100)
  assert.equal(e.decide(new Set(['b', 'c']), ['b'], 2000).claimTerm, 8)
})

test('an absurd hearsay term is ignored', () => {
  const e = new Election('b', T, 0)
  e.observe({ peerId: 'c', coordinator: { peerId: 'a', term: 2 ** 52 } }, 100)
  assert.equal(e.decide(new Set(['b', 'c']), ['b'], 2000).claimTerm, 1)
})

test('an eligible-looking claim of an absurd term changes nothing', () => {
  const e = new Election('c', T, 0)
  e.observe({ peerId: 'a', coordinator: { peerId: 'a', term: 3 } }, 100)
  for (const term of [2 ** 53 - 1, MAX_TERM + 1, 3 + 101, 1.5, -1, Number.NaN])
    assert.equal(e.observe({ peerId: 'rogue', coordinator: { peerId: 'rogue', term } }, 200), false, `term ${term}`)
  assert.deepEqual(e.decide(new Set(['a', 'c', 'rogue']), ['a', 'rogue', 'c'], 5000), {
    role: 'follower',
    coordinator: { peerId: 'a', term: 3 }
  })
  // elections go on above it: the coordinator gone, the next claim is one above the real term
  assert.equal(e.decide(new Set(['c']), ['c'], 6000).claimTerm, 4)
})

test('a node that missed elections follows the current coordinator at once; a new node believes what it hears', () => {
  const behind = new Election('c', T, 0)
  behind.observe({ peerId: 'a', coordinator: { peerId: 'a', term: 3 } }, 100)
  assert.equal(behind.observe({ peerId: 'b', coordinator: { peerId: 'b', term: 9 } }, 200), true)
  assert.equal(behind.coordinator, 'b')
  const fresh = new Election('d', T, 0)
  assert.equal(fresh.observe({ peerId: 'b', coordinator: { peerId: 'b', term: 5000 } }, 100), true)
  assert.equal(fresh.currentTerm, 5000)
})
