import { test } from 'node:test'
import assert from 'node:assert/strict'
import { formatStatus, formatTable } from './commands/status.js'
import { parseNvidiaSmi } from './capacity.js'
import type { ClusterView } from '@sollol/core'

test('formatTable pads columns to their widest cell', () => {
  assert.equal(
    formatTable([
      ['A', 'BB'],
      ['CCC', 'D']
    ]),
    'A    BB\nCCC  D'
  )
})

test('formatStatus shows one row per node with human units', () => {
  const node = {
    peerId: '12D3KooWabcdef123456',
    hostname: 'box1',
    status: 'self' as const,
    addresses: [],
    agentVersion: '0.1.0',
    rpc: { host: '10.0.0.2', port: 50052, protocol: '6.0.0', state: 'ready', llamaBuild: 'b1', servingTerm: 1, access: 'direct' as const },
    devices: [{ kind: 'cpu' as const, name: 'CPU', memoryTotal: 24 * 2 ** 30, memoryFree: 20 * 2 ** 30 }],
    memoryBudget: 8 * 2 ** 30,
    cpuThreads: 2,
    models: [],
    canCoordinate: false,
    speed: null,
    layers: [0, 7] as [number, number],
    output: true,
    apiPort: 7491,
    lastSeen: '2026-01-01T00:00:00.000Z'
  }
  const view: ClusterView = {
    cluster: 'default',
    self: node.peerId,
    nodes: [node],
    coordinator: null,
    plan: null,
    discovery: { mdns: 'ok', reason: null, listen: [] },
    generatedAt: ''
  }
  const text = formatStatus(view)
  assert.match(text, /cluster default: 1 node, answered by …123456/)
  assert.match(text, /box1\s+…123456\s+self\s+10\.0\.0\.2:50052\s+ready v6\.0\.0\s+cpu 24\.0 GiB\s+8\.0 GiB\s+-\s+0-7\+out\s+worker/)
})

test('parseNvidiaSmi reads name, total and free MiB per GPU', () => {
  assert.deepEqual(parseNvidiaSmi('NVIDIA GeForce RTX 3090, 24576, 23000\nTesla T4, 15360, 15000\n'), [
    { kind: 'cuda', name: 'NVIDIA GeForce RTX 3090', memoryTotal: 24576 * 2 ** 20, memoryFree: 23000 * 2 ** 20 },
    { kind: 'cuda', name: 'Tesla T4', memoryTotal: 15360 * 2 ** 20, memoryFree: 15000 * 2 ** 20 }
  ])
  assert.deepEqual(parseNvidiaSmi(''), [])
})

test('formatStatus names peers of another version, the weights a load sent and nodes planned smaller', () => {
  const view: ClusterView = {
    cluster: 'default',
    self: '12D3KooWself',
    nodes: [],
    coordinator: { peerId: '12D3KooWself', term: 3 },
    plan: {
      term: 3,
      generation: 2,
      model: { name: 'm', id: 'x' },
      server: { url: 'http://10.0.0.2:7492', state: 'ready', detail: null, auth: 'token' },
      contextSize: 256,
      tensorSplit: [],
      assignments: [],
      mismatch: null,
      predictedTokensPerSecond: null,
      excluded: [],
      budgetCuts: [
        { peerId: '12D3KooWsmall1', budget: 1e8, reason: 'could not allocate 400 MB for the plan; planned with 95.4 MiB from now on' }
      ],
      createdAt: ''
    },
    weightsOverLan: { bytes: 3_100_000, tensorsFromCache: 63, done: true },
    incompatible: [
      {
        peerId: '12D3KooWnewer1',
        cluster: 'default',
        hostname: 'box9',
        agentVersion: '2.0.0',
        v: 2,
        wire: { min: 2, max: 2 },
        reason: 'incompatible: upgrade'
      }
    ],
    discovery: { mdns: 'ok', reason: null, listen: [] },
    generatedAt: ''
  }
  const text = formatStatus(view)
  assert.match(text, /incompatible: box9 …newer1 \(sollol-agent 2\.0\.0\) speaks announcement versions 2-2, this one 1-1: upgrade/)
  assert.match(text, /weights sent over the LAN for this load: 3\.0 MiB \(63 tensors came from the rpc-servers' caches\)/)
  assert.match(text, /planned smaller: +…small1: could not allocate/)
})
