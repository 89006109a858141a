import { test } from 'node:test'
import assert from 'node:assert/strict'
import { clusterView, weightsOverLan } from './cluster-view.js'
import { testAnnouncement } from './test-announcement.js'
import type { PlanView } from './announcement.js'

const assignment = (peerId: string, device: string | null, layers: [number, number] | null, output = false) => ({
  peerId,
  rpc: `${peerId}:50052`,
  device,
  layers,
  actualLayers: layers,
  output,
  memoryBytes: 1000
})

test('a node planned per device holds the union of its devices, each shown apart; its one load is counted once', () => {
  const self = testAnnouncement('a')
  const plan = {
    term: 1,
    generation: 1,
    model: { name: 'm', id: 'x' },
    server: { url: 'http://127.0.0.1:8080', state: 'ready', detail: null },
    contextSize: 256,
    tensorSplit: [5.5, 4, 7.5],
    assignments: [assignment('b', null, [0, 5]), assignment('a', 'Vulkan0', [6, 9]), assignment('a', 'CPU', [10, 15], true)],
    mismatch: null,
    predictedTokensPerSecond: 10,
    excluded: [],
    createdAt: ''
  } as unknown as PlanView
  const b = testAnnouncement('b', {
    rpc: { ...testAnnouncement('b').rpc, load: { startedAt: '', weightBytes: 100, tensorsFromCache: 0, tensorsSent: 3, done: true } }
  })
  const view = clusterView(
    self,
    [{ announcement: b, lastHeard: 0, status: 'alive' } as never],
    { mdns: 'ok', reason: null, listen: [] },
    0,
    0,
    {
      coordinator: { peerId: 'c', term: 1 },
      plan,
      problem: null
    }
  )
  const a = view.nodes.find((n) => n.peerId === 'a')!
  assert.deepEqual(a.layers, [6, 15])
  assert.equal(a.output, true)
  assert.deepEqual(a.deviceLayers, [
    { device: 'Vulkan0', layers: [6, 9], output: false },
    { device: 'CPU', layers: [10, 15], output: true }
  ])
  assert.equal(view.nodes.find((n) => n.peerId === 'b')?.deviceLayers, undefined)
  const withLoad = view.nodes.map((n) =>
    n.peerId === 'a'
      ? { ...n, rpc: { ...n.rpc, load: { startedAt: '', weightBytes: 50, tensorsFromCache: 1, tensorsSent: 2, done: true } } }
      : n
  )
  assert.equal(weightsOverLan(plan, withLoad, 'c')?.bytes, 150, "a's load once, not once per device")
})
