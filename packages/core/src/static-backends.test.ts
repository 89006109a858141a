import { test } from 'node:test'
import assert from 'node:assert/strict'
import { testAnnouncement } from './test-announcement.js'
import { exclusionReason } from './backends.js'
import { isStaticPeer, staticAnnouncements } from './static-backends.js'

test('a bare rpc-server is planned like a node its owner speaks for; unreachable ones are left out', () => {
  const backend = {
    host: '10.0.0.9',
    port: 50052,
    protocol: '6.0.0',
    state: 'ready' as const,
    devices: [{ kind: 'cpu' as const, name: 'CPU', memoryTotal: 8e9, memoryFree: 6e9 }],
    memoryBudget: 4.5e9,
    speed: { secondsPerGiB: 0.2, measuredAt: '', method: 'm' }
  }
  const owner = testAnnouncement('a', {
    coordinator: { peerId: 'a', term: 3 },
    staticBackends: [backend, { ...backend, port: 50053, state: 'unreachable' }]
  })
  const also = testAnnouncement('b', { staticBackends: [backend] })
  const statics = staticAnnouncements([owner, also])
  assert.deepEqual(
    statics.map((s) => [s.peerId, s.rpc.state, s.rpc.servingTerm, s.rpc.access, s.canCoordinate]),
    [
      ['static:10.0.0.9:50052', 'external', 3, 'direct', false],
      ['static:10.0.0.9:50053', 'unreachable', 3, 'direct', false]
    ]
  )
  assert.ok(isStaticPeer(statics[0]!.peerId))
  assert.equal(exclusionReason(statics[0]!, owner, 3), null, 'planned with')
  assert.equal(exclusionReason(statics[1]!, owner, 3), 'rpc-server unreachable')
})
