import { test } from 'node:test'
import assert from 'node:assert/strict'
import { testAnnouncement } from './test-announcement.js'
import { clusterView, type ClusterView } from './cluster-view.js'
import { clusterEvents, EventLog } from './events.js'
import type { Announcement, PlanView } from './announcement.js'

function node(peerId: string, over: Partial<Announcement> = {}): Announcement {
  return testAnnouncement(peerId, {
    incarnation: 1,
    addresses: [],
    rpc: { host: '10.0.0.2', port: 50052, protocol: '6.0.0', state: 'ready', llamaBuild: 'b1', servingTerm: 1, access: 'gated' },
    devices: [],
    memoryBudget: 1e9,
    apiPort: 7491,
    ...over
  })
}

const plan = (generation: number, state: PlanView['server']['state']): PlanView => ({
  term: 1,
  generation,
  model: { name: 'm.gguf', id: '0123456789abcdef' },
  server: { url: 'http://10.0.0.2:7492', state, detail: null, auth: 'none' },
  contextSize: 512,
  tensorSplit: [1, 1],
  assignments: [
    { peerId: 'self-aaaaaa', rpc: '10.0.0.2:50052', layers: [0, 3], actualLayers: null, output: false, memoryBytes: 1 },
    { peerId: 'peer-bbbbbb', rpc: '10.0.0.3:50052', layers: [4, 7], actualLayers: null, output: true, memoryBytes: 1 }
  ],
  mismatch: null,
  predictedTokensPerSecond: null,
  excluded: [],
  createdAt: new Date(0).toISOString()
})

const discovery = { mdns: 'disabled' as const, reason: null, listen: [] }

function view(
  members: Announcement[],
  coordination?: { term: number; plan: PlanView | null },
  status: 'alive' | 'suspect' = 'alive'
): ClusterView {
  return clusterView(
    node('self-aaaaaa'),
    members.map((a) => ({ announcement: a, lastHeard: 0, connected: true, disconnectedAt: undefined, status })),
    discovery,
    0,
    0,
    {
      coordinator: coordination === undefined ? null : { peerId: 'self-aaaaaa', term: coordination.term },
      plan: coordination?.plan ?? null,
      problem: null
    }
  )
}

test('events tell joins, silence, election, a plan with its layers, server states and leaves', () => {
  const peer = node('peer-bbbbbb')
  const steps = [
    view([]),
    view([peer]),
    view([peer], { term: 1, plan: null }),
    view([peer], { term: 1, plan: plan(1, 'loading') }),
    view([peer], { term: 1, plan: plan(1, 'ready') }),
    view([{ ...peer, rpc: { ...peer.rpc, state: 'frozen' } }], { term: 1, plan: plan(1, 'ready') }, 'suspect'),
    view([], { term: 1, plan: plan(1, 'ready') })
  ]
  const messages = steps.map((after, i) => clusterEvents(i === 0 ? null : (steps[i - 1] ?? null), after).map((e) => e.message))
  assert.deepEqual(messages, [
    ['host-self-aaaaaa (…aaaaaa) this agent started'],
    ['host-peer-bbbbbb (…bbbbbb) joined'],
    ['host-self-aaaaaa (…aaaaaa) coordinates (term 1)'],
    ['plan 1 (term 1) for m.gguf: host-self-aaaaaa 0-3, host-peer-bbbbbb 4-7 + output; llama-server loading'],
    ['llama-server loading -> ready'],
    ['host-peer-bbbbbb (…bbbbbb) went silent (suspect)', 'host-peer-bbbbbb (…bbbbbb) rpc-server ready -> frozen'],
    ['host-peer-bbbbbb (…bbbbbb) left']
  ])
  assert.deepEqual(clusterEvents(steps[4] ?? null, steps[4] as ClusterView), [], 'no change, no event')
})

test('the event log keeps the newest events, numbered, and answers from an id on', () => {
  const log = new EventLog(3)
  for (let i = 0; i < 5; i++) log.add([{ kind: 'plan', peerId: null, message: `e${i}` }], new Date(i).toISOString())
  assert.deepEqual(
    log.since().map((e) => [e.id, e.message]),
    [
      [3, 'e2'],
      [4, 'e3'],
      [5, 'e4']
    ]
  )
  assert.deepEqual(
    log.since(4).map((e) => e.id),
    [5]
  )
})
