import { test } from 'node:test'
import assert from 'node:assert/strict'
import { devicesText, formatLayerMap, formatStatus, formatTable, layersText } from './commands/status.js'
import { announcedDevices, deviceBudgets, parseNvidiaSmi } from './capacity.js'
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
  // a measured speed: the price per GiB of layers and what every token costs there
  const speed = { secondsPerGiB: 0.1084, fixedSecondsPerToken: 0.00057, measuredAt: '', method: '' }
  assert.match(formatStatus({ ...view, nodes: [{ ...node, speed }] }), /8\.0 GiB\s+0\.108 s\/GiB \+0\.6 ms\s+0-7\+out/)
  const older = { secondsPerGiB: 0.1084, measuredAt: '', method: '' }
  assert.match(formatStatus({ ...view, nodes: [{ ...node, speed: older }] }), /8\.0 GiB\s+0\.108 s\/GiB\s+0-7\+out/)
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

const MIB = 2 ** 20

test('device budgets: the CPU offers the node budget, a GPU its free memory less a reserve, --max-memory NAME=SIZE wins', () => {
  const served = [
    { name: 'CUDA0', backend: 'cuda', memoryTotal: 32768 * MIB, memoryFree: 30000 * MIB },
    { name: 'Vulkan0', backend: 'vulkan', memoryTotal: 2048 * MIB, memoryFree: 2048 * MIB },
    { name: 'CPU', backend: 'cpu', memoryTotal: 65536 * MIB, memoryFree: 65536 * MIB }
  ]
  // 5 % of a 32 GiB card (1638 MiB) is held back; on a 2 GiB device the 256 MiB minimum
  assert.deepEqual(deviceBudgets(served, 48000 * MIB), [28361 * MIB, 1792 * MIB, 48000 * MIB])
  assert.deepEqual(deviceBudgets(served, 48000 * MIB, { CUDA0: 14 * 1024 * MIB }), [14 * 1024 * MIB, 1792 * MIB, 48000 * MIB])
})

test('announced devices carry llama.cpp names, the server order, per-device memory and budgets; status shows them', () => {
  const served = [
    { name: 'Vulkan0', description: 'llvmpipe', backend: 'vulkan' as const, memoryTotal: 2048 * MIB, memoryFree: 2048 * MIB },
    { name: 'CPU', description: 'AMD EPYC', backend: 'cpu' as const, memoryTotal: 24000 * MIB, memoryFree: 24000 * MIB }
  ]
  const memory = [
    { index: 0, free: 2000 * MIB, total: 2048 * MIB },
    { index: 1, free: 24000 * MIB, total: 24000 * MIB }
  ]
  const devices = announcedDevices(served, memory, [1500 * MIB, 8000 * MIB], 20000 * MIB)
  assert.deepEqual(
    devices.map((d) => [d.name, d.kind, d.type, d.rpcIndex, d.memoryFree / MIB, (d.budget ?? 0) / MIB]),
    [
      ['Vulkan0', 'vulkan', 'gpu', 0, 2000, 1500],
      ['CPU', 'cpu', 'cpu', 1, 20000, 8000]
    ]
  )
  assert.equal(devicesText({ devices }), 'Vulkan0 1.5 GiB, CPU 7.8 GiB')
  assert.equal(
    layersText({
      layers: [0, 9],
      output: true,
      deviceLayers: [
        { device: 'Vulkan0', layers: [0, 2], output: false },
        { device: 'CPU', layers: [3, 9], output: true }
      ]
    }),
    'Vulkan0 0-2, CPU 3-9+out'
  )
  const view = {
    cluster: 'default',
    self: 'p1',
    nodes: [{ peerId: 'p1', hostname: 'box' }],
    plan: {
      assignments: [
        { peerId: 'p1', device: 'Vulkan0', layers: [0, 2], output: false, memoryBytes: 100 * MIB },
        { peerId: 'p1', device: 'CPU', layers: [3, 5], output: true, memoryBytes: 200 * MIB }
      ]
    }
  } as unknown as ClusterView
  assert.match(
    formatLayerMap(view),
    /AAABBB\|B\n {2}A box …p1 Vulkan0 {2}layers 0-2, 100 MiB\n {2}B box …p1 CPU {2}layers 3-5\+out, 200 MiB/
  )
})
