import { test } from 'node:test'
import assert from 'node:assert/strict'
import { plan, planDevicesOf, PlanError, computeHeadroomBytes, servesAccelerator, type PlanModel, type PlanNode } from './planner.js'
import { expectedLayerDevices, layersPerDevice, type LayerDevice } from './layer-split.js'
import { seededRandom } from './random.js'

const MIB = 2 ** 20
const GIB = 2 ** 30

function model(layers: number, layerMiB: number, over: Partial<PlanModel> = {}): PlanModel {
  return {
    name: 'm.gguf',
    id: 'aaaaaaaaaaaaaaaa',
    layerWeightBytes: new Array(layers).fill(layerMiB * MIB),
    embeddingBytes: 50 * MIB,
    outputBytes: 50 * MIB,
    kvBytesPerTokenPerLayer: 256,
    embeddingLength: 64,
    headCount: 4,
    vocabSize: 1000,
    contextLength: 4096,
    ...over
  }
}

function node(peerId: string, budgetMiB: number, secondsPerGiB: number | undefined, over: Partial<PlanNode> = {}): PlanNode {
  return {
    peerId,
    hostname: peerId,
    rpc: `${peerId}:50052`,
    memoryBudget: budgetMiB * MIB,
    secondsPerGiB,
    hopSeconds: 0.001,
    isHost: false,
    ...over
  }
}

const counts = (p: ReturnType<typeof plan>): Record<string, number> => Object.fromEntries(p.nodes.map((n) => [n.peerId, n.layerCount]))

test('a model that fits on one node runs there, on the fastest that can hold it', () => {
  const p = plan({
    model: model(32, 100),
    nodes: [node('slow', 20_000, 2), node('fast', 20_000, 1), node('host', 20_000, 1.5, { isHost: true })],
    contextSize: 512
  })
  assert.deepEqual(counts(p), { fast: 32 })
  assert.deepEqual(p.nodes[0]?.layers, [0, 31])
  assert.equal(p.nodes[0]?.output, true)
  assert.match(p.unused.find((u) => u.peerId === 'slow')?.why ?? '', /not needed/)
})

test('fastest first: the fast nodes are filled to their memory, the slow one takes only the rest', () => {
  const m = model(40, 100)
  const perLayer = 100 * MIB + 256 * 512
  const headroom = computeHeadroomBytes(m, 512)
  const budget = (layers: number, extra = 0): number => (layers * perLayer + headroom + extra) / MIB
  const p = plan({
    model: m,
    contextSize: 512,
    nodes: [node('slow', budget(40, 50 * MIB), 3), node('a', budget(15), 1), node('b', budget(15, 50 * MIB), 1)]
  })
  const c = counts(p)
  assert.equal(c.a, 15)
  assert.equal((c.a ?? 0) + (c.b ?? 0) + (c.slow ?? 0), 40)
  assert.equal(c.slow, 10, 'the slow node only takes what the fast ones cannot hold')
  // memory-safe: every node within its offer
  for (const n of p.nodes) assert.ok(n.memory.total <= n.memory.budget, `${n.peerId}: ${n.memory.total} > ${n.memory.budget}`)
  // the tensor split makes llama.cpp place exactly these counts
  const devices = expectedLayerDevices(p.tensorSplit, 40)
  assert.deepEqual(
    layersPerDevice(devices, p.nodes.length).perDevice,
    p.nodes.map((n) => n.layerCount)
  )
  assert.equal(p.nodes[p.nodes.length - 1]?.output, true)
})

test("a slow but big node is not preferred over fast ones by memory alone (the peer systems' mistake)", () => {
  const p = plan({
    model: model(20, 100),
    contextSize: 512,
    nodes: [node('ramrich-slow', 64_000, 5), node('fast1', 1300, 1), node('fast2', 1300, 1)]
  })
  const c = counts(p)
  assert.ok((c['ramrich-slow'] ?? 0) < 20, 'the slow node does not take the whole model')
  assert.ok(p.predictedSecondsPerToken < 20 * (100 / 1024) * 5, 'faster than the slow node alone')
})

test('a node with much less memory gets fewer layers', () => {
  const p = plan({ model: model(24, 100), contextSize: 512, nodes: [node('a', 1200, 1), node('b', 1200, 1), node('small', 400, 1)] })
  const c = counts(p)
  assert.ok((c.small ?? 0) < (c.a ?? 0) && (c.small ?? 0) < (c.b ?? 0), JSON.stringify(c))
})

test('the host keeps the embeddings in its memory; unmeasured nodes are assumed slow', () => {
  const p = plan({
    model: model(10, 100),
    contextSize: 512,
    nodes: [node('host', 5000, 1, { isHost: true }), node('guess', 5000, undefined)]
  })
  assert.deepEqual(counts(p), { host: 10 })
  assert.equal(p.nodes[0]?.memory.embeddings, 50 * MIB)
  assert.equal(p.unused[0]?.peerId, 'guess')
})

test("a model too big for the cluster fails with each node's required and offered bytes", () => {
  assert.throws(
    () => plan({ model: model(100, 100), contextSize: 512, nodes: [node('a', 1000, 1), node('b', 2000, 1)] }),
    (err: Error) => {
      assert.ok(err instanceof PlanError)
      assert.match(
        err.message,
        /Cannot place m\.gguf: 100 layers need .* GiB .* but the nodes offer 2\.9 GiB: a offers 0\.977 GiB, holds \d+ layer/
      )
      assert.equal(err.nodes.length, 2)
      assert.equal(err.nodes[0]?.offeredBytes, 1000 * MIB)
      return true
    }
  )
  assert.throws(
    () => plan({ model: model(4, 1), nodes: [node('h', 10, 1, { isHost: true }), node('b', (10 * GIB) / MIB, 1)] }),
    /the host h offers .* needs .* for the input embeddings/
  )
})

test('the hop cost decides whether splitting pays', () => {
  // Two equal nodes: splitting halves nothing (same speed) and adds a hop: one node.
  assert.equal(plan({ model: model(8, 100), contextSize: 512, nodes: [node('a', 5000, 1), node('b', 5000, 1)] }).nodes.length, 1)
  // A fast node that holds half the model beside a slow one that holds it all: splitting pays when the hop is cheap.
  const m = model(20, 100)
  const half = (10 * (100 * MIB + 256 * 512) + computeHeadroomBytes(m, 512)) / MIB
  const cheap = plan({
    model: m,
    contextSize: 512,
    nodes: [node('fast', half, 0.2, { hopSeconds: 0.0001 }), node('slow', 5000, 2, { hopSeconds: 0.0001 })]
  })
  assert.deepEqual(counts(cheap), { fast: 10, slow: 10 })
})

test('layers of unequal size (a quantized file) are placed by their real sizes, never past a budget', () => {
  // alternating 1 and 2 MiB layers, as Q4_K_M keeps some tensors of some layers at 6 bits
  const m = model(8, 1, { layerWeightBytes: [1, 2, 1, 2, 1, 2, 1, 2].map((x) => x * MIB), kvBytesPerTokenPerLayer: 0 })
  const fixed = computeHeadroomBytes(m, 256) / MIB
  // 6 MiB for layers on the fast node: three layers if each were priced as the largest, four by their sizes
  const p = plan({ model: m, nodes: [node('fast', fixed + 6, 1), node('slow', 1000, 10)], contextSize: 256 })
  assert.deepEqual(counts(p), { fast: 4, slow: 4 })
  assert.deepEqual(p.nodes[0]?.layers, [0, 3])
  assert.equal(p.nodes[0]?.memory.weights, 6 * MIB)
  assert.ok(p.nodes[0]!.memory.total <= p.nodes[0]!.memory.budget)
  // the output node's layers come from the end: its budget is checked against those
  const q = plan({ model: m, nodes: [node('big', 1000, 10), node('out', fixed + 50 + 3, 1)], contextSize: 256 })
  const out = q.nodes.find((n) => n.output)!
  assert.ok(out.memory.total <= out.memory.budget, `${out.memory.total} <= ${out.memory.budget}`)

  // any sizes, budgets and speeds: every used node within its budget, the layers contiguous and all placed
  const random = seededRandom(7)
  for (let round = 0; round < 300; round++) {
    const layers = 1 + Math.floor(random() * 24)
    const sizes = Array.from({ length: layers }, () => Math.round((0.5 + random() * 3) * MIB))
    const r = model(layers, 1, { layerWeightBytes: sizes, kvBytesPerTokenPerLayer: Math.floor(random() * 2048) })
    const base = computeHeadroomBytes(r, 512) / MIB + 50
    const nodes = Array.from({ length: 1 + Math.floor(random() * 5) }, (_, i) =>
      node(`n${i}`, base + random() * 40, random() < 0.2 ? undefined : 0.5 + random() * 5, { isHost: i === 0 })
    )
    let result: ReturnType<typeof plan>
    try {
      result = plan({ model: r, nodes, contextSize: 512 })
    } catch (err) {
      assert.ok(err instanceof PlanError, String(err))
      continue
    }
    let next = 0
    for (const n of result.nodes) {
      assert.ok(n.memory.total <= n.memory.budget, `round ${round}: ${n.peerId} ${n.memory.total} > ${n.memory.budget}`)
      if (n.layers !== null) {
        assert.equal(n.layers[0], next, `round ${round}: contiguous`)
        next = n.layers[1] + 1
      }
    }
    assert.equal(next, layers, `round ${round}: every layer placed`)
  }
})

test('the compute headroom: activations by width, the attention mask of a batch against every cell, one mask per cache kind', () => {
  const m = model(8, 1, { headCount: 8, feedForwardWidth: 256 })
  const base = 16 * 512 * (64 + 256) + 8 * 512 * 1000 + 2 * MIB
  assert.equal(computeHeadroomBytes(m, 256), base + 8 * 512 * 256)
  assert.equal(computeHeadroomBytes(m, 4096), base + 8 * 512 * 4096)
  // flash attention: the heads do not count
  assert.equal(computeHeadroomBytes({ ...m, headCount: 64 }, 4096), computeHeadroomBytes(m, 4096))
  // no feed-forward width in the file: 4 x the embedding
  assert.equal(computeHeadroomBytes({ ...m, feedForwardWidth: undefined }, 256), base + 16 * 512 * (256 - 256) + 8 * 512 * 256)
  // sliding-window layers have a cache (and a mask) of their own: window x 4 slots + ubatch cells, padded
  const swa = { ...m, slidingWindow: { window: 128, layers: [true, true, true, true, true, false, true, true] } }
  assert.equal(computeHeadroomBytes(swa, 4096), base + 8 * 512 * (4096 + 1024))
  const allSwa = { ...m, slidingWindow: { window: 128, layers: new Array<boolean>(8).fill(true) } }
  assert.equal(computeHeadroomBytes(allSwa, 4096), base + 8 * 512 * 1024)
  // a node that holds 8 layers at a short context holds fewer at a long one
  const budget = (computeHeadroomBytes(m, 256) + 8 * (MIB + 256 * 256)) / MIB
  const short = plan({ model: m, contextSize: 256, nodes: [node('a', budget, 1), node('b', 5000, 5)] })
  const long = plan({ model: m, contextSize: 4096, nodes: [node('a', budget, 1), node('b', 5000, 5)] })
  assert.equal(counts(short).a, 8)
  assert.ok((counts(long).a ?? 0) < 8, JSON.stringify(counts(long)))
})

/** A node whose rpc-server serves two devices: [name, budget MiB, seconds per GiB] each, in its order. */
function serverOf(
  peerId: string,
  first: [string, number, number],
  second: [string, number, number],
  over: Partial<PlanNode> = {}
): PlanNode {
  const device = ([name, budgetMiB, secondsPerGiB]: [string, number, number]) => ({ name, memoryBudget: budgetMiB * MIB, secondsPerGiB })
  return node(peerId, 0, undefined, { devices: [device(first), device(second)], ...over })
}

const deviceCounts = (p: ReturnType<typeof plan>): string[] => p.nodes.map((n) => `${n.peerId}/${n.device ?? '-'}:${n.layerCount}`)

/** The layers llama.cpp gives each RPC device for the plan's split, checked against the plan's stages. */
function checkSplit(p: ReturnType<typeof plan>, devicesPerServer: Record<string, number>, layers: number): LayerDevice[] {
  const total = p.rpc.reduce((sum, rpc) => sum + (devicesPerServer[rpc] ?? 1), 0)
  assert.equal(p.tensorSplit.length, total, 'one --tensor-split entry per RPC device of the used servers')
  const devices = expectedLayerDevices(p.tensorSplit, layers)
  const perDevice = layersPerDevice(devices, total).perDevice
  let at = 0
  const expected: number[] = []
  for (const rpc of p.rpc) {
    for (let i = 0; i < (devicesPerServer[rpc] ?? 1); i++) {
      expected[at + i] = p.nodes.find((n) => n.rpc === rpc && n.deviceIndex === i)?.layerCount ?? 0
    }
    at += devicesPerServer[rpc] ?? 1
  }
  assert.deepEqual(perDevice, expected)
  return devices
}

test('a mixed node: the fast GPU holds what fits, its own CPU the overflow, one --rpc entry and one split entry per device', () => {
  const gpuBox = serverOf('gpu-box', ['CUDA0', 1200, 0.1], ['CPU', 8000, 2])
  const p = plan({ model: model(32, 100), nodes: [gpuBox, node('cpu-box', 1000, 2)], contextSize: 512 })
  // the GPU is filled to its memory; the rest goes to the same box's CPU (no extra network hop to pay for...
  // each device is still a graph split, so the other CPU box is not needed)
  const gpu = p.nodes.find((n) => n.device === 'CUDA0')
  assert.ok(gpu !== undefined && gpu.layerCount >= 10 && gpu.memory.total <= 1200 * MIB, JSON.stringify(deviceCounts(p)))
  assert.deepEqual(p.rpc, ['gpu-box:50052'])
  assert.deepEqual(deviceCounts(p), [`gpu-box/CUDA0:${gpu.layerCount}`, `gpu-box/CPU:${32 - gpu.layerCount}`])
  assert.equal(p.nodes.at(-1)?.output, true)
  const devices = checkSplit(p, { 'gpu-box:50052': 2 }, 32)
  assert.equal(devices[32], 1, 'the output layer on the CPU device, the last stage')
})

test('a card is planned with its own memory, not the box RAM: a 41 GiB model never lands on a 32 GB card alone', () => {
  const layers = 80
  const m = model(layers, (41 * 1024) / layers, { embeddingBytes: 500 * MIB, outputBytes: 800 * MIB })
  const box = serverOf('box', ['CUDA0', 30 * 1024, 0.05], ['CPU', 45 * 1024, 1], { isHost: true })
  const p = plan({ model: m, nodes: [box], contextSize: 4096 })
  for (const n of p.nodes) assert.ok(n.memory.total <= n.memory.budget, `${n.device} within its budget`)
  assert.deepEqual(
    p.nodes.map((n) => n.device),
    ['CUDA0', 'CPU']
  )
  assert.equal(p.nodes.find((n) => n.device === 'CPU')?.memory.embeddings, 500 * MIB, 'the embeddings in the host CPU memory')
  checkSplit(p, { 'box:50052': 2 }, layers)
})

test('a slow device is left out when the model fits without it; the split gives it a zero share', () => {
  const withVulkan = serverOf('a', ['Vulkan0', 2048, 40], ['CPU', 4000, 1])
  const p = plan({ model: model(16, 100), nodes: [withVulkan, node('b', 4000, 1)], contextSize: 512 })
  assert.deepEqual(
    p.nodes.map((n) => n.device),
    ['CPU'],
    JSON.stringify(deviceCounts(p))
  )
  assert.match(p.unused.find((u) => u.device === 'Vulkan0')?.why ?? '', /slower than it helps/)
  assert.equal(p.tensorSplit[0], 0)
  checkSplit(p, { 'a:50052': 2 }, 16)
})

test('the output on a device before an unused one of the same server: llama.cpp still puts it there', () => {
  const box = serverOf('box', ['CUDA0', 8000, 0.1], ['CPU', 8000, 3])
  const p = plan({ model: model(16, 100), nodes: [node('other', 800, 1), box], contextSize: 512 })
  assert.equal(p.nodes.at(-1)?.device, 'CUDA0')
  const devices = checkSplit(p, { 'box:50052': 2, 'other:50052': 1 }, 16)
  const cudaIndex = p.rpc.indexOf('box:50052') === 0 ? 0 : 1
  assert.equal(devices[16], cudaIndex, 'the output layer on CUDA0')
})

test('a device needed for memory is used even when slow, and every device stays within its budget', () => {
  const box = serverOf('box', ['Vulkan0', 700, 40], ['CPU', 900, 1])
  const p = plan({ model: model(16, 100), nodes: [box, node('b', 500, 1)], contextSize: 512 })
  assert.ok(
    p.nodes.some((n) => n.device === 'Vulkan0' && n.layerCount > 0),
    JSON.stringify(deviceCounts(p))
  )
  for (const n of p.nodes) assert.ok(n.memory.total <= n.memory.budget)
  checkSplit(p, { 'box:50052': 2 }, 16)
})

test('random clusters of multi-device servers and unequal layers: every device within budget, the split is the plan', () => {
  const random = seededRandom(12)
  let planned = 0
  for (let round = 0; round < 300; round++) {
    const layers = 4 + Math.floor(random() * 20)
    const m = model(layers, 1, {
      layerWeightBytes: Array.from({ length: layers }, () => Math.round((20 + random() * 40) * MIB)),
      kvBytesPerTokenPerLayer: 1024
    })
    const servers: Record<string, number> = {}
    const nodes = Array.from({ length: 1 + Math.floor(random() * 4) }, (_, i): PlanNode => {
      const deviceCount = random() < 0.5 ? 0 : 1 + Math.floor(random() * 3)
      servers[`n${i}:50052`] = Math.max(1, deviceCount)
      const devices = Array.from({ length: deviceCount }, (_, d) => ({
        name: d === deviceCount - 1 ? 'CPU' : `Vulkan${d}`,
        memoryBudget: Math.round((50 + random() * 600) * MIB),
        secondsPerGiB: random() < 0.2 ? undefined : 0.1 + random() * 5
      }))
      return node(`n${i}`, 50 + random() * 600, 0.1 + random() * 5, {
        isHost: i === 0,
        ...(deviceCount > 0 ? { devices } : {})
      })
    })
    let p: ReturnType<typeof plan>
    try {
      p = plan({ model: m, nodes, contextSize: 256 })
    } catch (err) {
      assert.ok(err instanceof PlanError, String(err))
      continue
    }
    planned++
    for (const n of p.nodes) assert.ok(n.memory.total <= n.memory.budget, `round ${round}: ${n.peerId}/${n.device} over budget`)
    assert.equal(
      p.nodes.reduce((sum, n) => sum + n.layerCount, 0),
      layers
    )
    checkSplit(p, servers, layers)
  }
  assert.ok(planned > 100, `${planned} of 300 random clusters planned`)
})

test('the output head is priced where it runs, and its logits when they cross the LAN', () => {
  const m = model(8, 100, { outputBytes: 800 * MIB, vocabSize: 128_000 })
  const p = plan({ model: m, nodes: [node('remote', 20_000, 1)], contextSize: 512 })
  const layers = (8 * 100 * MIB) / GIB
  const head = (800 * MIB) / GIB
  assert.ok(Math.abs(p.predictedSecondsPerToken - (layers * 1 + 0.001 + head * 1 + (128_000 * 4) / 125e6)) < 1e-9)
  // a fast device for the 800 MiB head beats a slow one that would hold it: the output goes where it runs fast
  const split = plan({
    model: m,
    nodes: [node('slow', 3000, 4, { isHost: true }), node('fast', 1800, 0.5)],
    contextSize: 512
  })
  assert.equal(split.nodes.at(-1)?.peerId, 'fast')
})

test('sliding-window layers are planned with their smaller KV cache', () => {
  // 12 layers, 5 of each 6 with a 256 window; KV 64 KiB per token per layer; context 8192, one slot
  const layers = Array.from({ length: 12 }, (_, il) => il % 6 < 5)
  const m = model(12, 10, { kvBytesPerTokenPerLayer: 64 * 1024, contextLength: 8192 })
  const swa = { ...m, slidingWindow: { window: 256, layers } }
  const nodes = [node('a', 100_000, 1)]
  const full = plan({ model: m, nodes, contextSize: 8192, parallel: 1 })
  const windowed = plan({ model: swa, nodes, contextSize: 8192, parallel: 1 })
  assert.equal(full.nodes[0]?.memory.kv, 12 * 8192 * 64 * 1024)
  // 10 sliding layers of 768 cells (256 + 512) and 2 full ones
  assert.equal(windowed.nodes[0]?.memory.kv, (10 * 768 + 2 * 8192) * 64 * 1024)
  // a budget that holds 4 full-context layers holds more of the windowed ones
  const headroom = computeHeadroomBytes(m, 8192)
  const budget = (headroom + 50 * MIB + 4 * (10 * MIB + 8192 * 64 * 1024)) / MIB
  const small = [node('small', budget, 1), node('big', 100_000, 5)]
  const fullSplit = plan({ model: m, nodes: small, contextSize: 8192, parallel: 1 })
  const swaSplit = plan({ model: swa, nodes: small, contextSize: 8192, parallel: 1 })
  const on = (p: ReturnType<typeof plan>): number => p.nodes.find((n) => n.peerId === 'small')?.layerCount ?? 0
  assert.ok(on(swaSplit) > on(fullSplit), `${on(swaSplit)} > ${on(fullSplit)}`)
  for (const n of swaSplit.nodes) assert.ok(n.memory.total <= n.memory.budget)
})

test('per-layer KV heads: each layer is planned with its own cache', () => {
  const m = model(4, 10, { kvBytesPerTokenPerLayer: 2048, kvBytesPerTokenByLayer: [2048, 0, 512, 2048] })
  const p = plan({ model: m, nodes: [node('a', 10_000, 1)], contextSize: 1000 })
  assert.equal(p.nodes[0]?.memory.kv, (2048 + 0 + 512 + 2048) * 1000)
})

test("planDevicesOf: an rpc-server's announced devices in its order, with budgets (cut where told) and speeds", () => {
  const cpu = {
    kind: 'cpu',
    name: 'CPU',
    type: 'cpu',
    rpcIndex: 1,
    budget: 8 * GIB,
    speed: { secondsPerGiB: 2, fixedSecondsPerToken: 0.001 }
  }
  const gpu = { kind: 'cuda', name: 'CUDA0', type: 'gpu', rpcIndex: 0, budget: 20 * GIB, speed: null }
  assert.deepEqual(
    planDevicesOf([cpu, gpu], (name, offer) => (name === 'CUDA0' ? offer / 2 : offer)),
    [
      { name: 'CUDA0', memoryBudget: 10 * GIB, secondsPerGiB: undefined, hostMemory: false },
      { name: 'CPU', memoryBudget: 8 * GIB, secondsPerGiB: 2, fixedSecondsPerToken: 0.001, hostMemory: true }
    ]
  )
  assert.equal(planDevicesOf([cpu]), undefined, 'one device: planned as the node')
  assert.equal(
    planDevicesOf([
      { kind: 'cpu', name: 'AMD EPYC' },
      { kind: 'cuda', name: 'RTX' }
    ]),
    undefined,
    'an older agent lists no rpc devices'
  )
})

test('a GPU priced by its fitted cost holds the model it fits; the CPU of its server is left out, the fixed part counted', () => {
  // an H200 as two calibration sizes price it (the GPU at the fit's resolution + 1 ms a token) beside its CPU
  const box = node('box', 0, undefined, {
    isHost: true,
    devices: [
      { name: 'CUDA0', memoryBudget: 2000 * MIB, secondsPerGiB: 0.001, fixedSecondsPerToken: 0.001 },
      { name: 'CPU', memoryBudget: 4000 * MIB, secondsPerGiB: 0.1, fixedSecondsPerToken: 0.0005, hostMemory: true }
    ]
  })
  const p = plan({ model: model(16, 50), nodes: [box] })
  assert.deepEqual(deviceCounts(p), ['box/CUDA0:16'])
  assert.match(p.unused.map((u) => `${u.device}: ${u.why}`).join('; '), /CPU: left out: slower than it helps/)
  const gpu = p.nodes[0]
  assert.ok(gpu !== undefined && gpu.secondsPerToken >= 0.001 - 0.0002, String(gpu?.secondsPerToken))
  assert.match(gpu.why, /0\.001 s\/GiB \+ 0\.80 ms a token/)
  // without the fixed parts (older agents' speeds) the same devices plan the same way, a token cheaper
  const old = plan({
    model: model(16, 50),
    nodes: [{ ...box, devices: box.devices?.map(({ fixedSecondsPerToken: _, ...d }) => d) }]
  })
  assert.deepEqual(deviceCounts(old), ['box/CUDA0:16'])
  assert.ok((old.nodes[0]?.secondsPerToken ?? 0) < gpu.secondsPerToken)
})

test("a plan pays the host's fixed part once (llama-server's own step), not once per stage nor a worker's", () => {
  // three CPU nodes, calibrated at 3, 3.5 and 4 ms a token whatever they hold; the model needs all three
  const m = model(12, 100)
  const fixed = 0.003
  const nodes = ['a', 'b', 'c'].map((id, i) => node(id, 550, 1, { fixedSecondsPerToken: fixed + i * 0.0005, isHost: i === 0 }))
  const p = plan({ model: m, nodes, contextSize: 256 })
  assert.equal(p.nodes.length, 3)
  const withoutFixed = plan({ model: m, nodes: nodes.map(({ fixedSecondsPerToken: _, ...n }) => n), contextSize: 256 })
  assert.deepEqual(counts(p), counts(withoutFixed))
  // the host's (a: 3 ms, less the loopback hop the calibration included), once: c's 4 ms were its own
  // machine's llama-server step, which the plan does not run there
  const once = fixed - 0.0002
  assert.ok(Math.abs(p.predictedSecondsPerToken - withoutFixed.predictedSecondsPerToken - once) < 1e-9, String(p.predictedSecondsPerToken))
  // the stages' shares add up to the plan's prediction, the fixed part on the stage that brought it
  const shares = p.nodes.reduce((sum, n) => sum + n.secondsPerToken, 0)
  assert.ok(Math.abs(shares - p.predictedSecondsPerToken) < 1e-9, `${shares} != ${p.predictedSecondsPerToken}`)
  const a = p.nodes.find((n) => n.peerId === 'a')
  const aWithout = withoutFixed.nodes.find((n) => n.peerId === 'a')
  assert.ok(a !== undefined && aWithout !== undefined && Math.abs(a.secondsPerToken - aWithout.secondsPerToken - once) < 1e-9)

  // an accelerator's own fixed part (its kernel launches) is paid where it is larger than the host's
  const gpu = plan({
    model: m,
    nodes: nodes.map((n) => (n.peerId === 'c' ? { ...n, accelerator: true, fixedSecondsPerToken: 0.006 } : n)),
    contextSize: 256
  })
  assert.ok(Math.abs(gpu.predictedSecondsPerToken - withoutFixed.predictedSecondsPerToken - (0.006 - 0.0002)) < 1e-9)
  // no host measurement: the largest of the stages, as before
  const unknownHost = plan({
    model: m,
    nodes: nodes.map((n) => (n.isHost ? { ...n, fixedSecondsPerToken: undefined } : n)),
    contextSize: 256
  })
  assert.ok(Math.abs(unknownHost.predictedSecondsPerToken - withoutFixed.predictedSecondsPerToken - (fixed + 0.001 - 0.0002)) < 1e-9)
})

test("the prompt speed: each used device's weights at its prompt price, one after the other; unknown while a price is", () => {
  const m = model(20, 100)
  const nodes = [node('a', 1500, 0.05, { isHost: true, promptSecondsPerGiB: 0.01 }), node('b', 1500, 0.05, { promptSecondsPerGiB: 0.03 })]
  const p = plan({ model: m, nodes, contextSize: 512 })
  const seconds = p.nodes.reduce((sum, n) => sum + ((n.memory.weights + n.memory.output) / GIB) * (n.peerId === 'a' ? 0.01 : 0.03), 0)
  assert.equal(p.nodes.length, 2)
  assert.ok(p.predictedPromptTokensPerSecond !== null)
  assert.ok(Math.abs(p.predictedPromptTokensPerSecond - 1 / seconds) < 1e-9)
  const unknown = plan({ model: m, nodes: [nodes[0]!, node('b', 1500, 0.05)], contextSize: 512 })
  assert.equal(unknown.predictedPromptTokensPerSecond, null)
})

test('a node computes on an accelerator when a device it serves is one (an older agent: any it lists)', () => {
  assert.equal(servesAccelerator([{ kind: 'cpu', rpcIndex: 0 }]), false)
  assert.equal(
    servesAccelerator([
      { kind: 'vulkan', rpcIndex: 0 },
      { kind: 'cpu', rpcIndex: 1 }
    ]),
    true
  )
  // a GPU in the box that the rpc-server does not serve
  assert.equal(servesAccelerator([{ kind: 'cuda' }, { kind: 'cpu', rpcIndex: 0 }]), false)
  assert.equal(servesAccelerator([{ kind: 'cuda' }]), true)
})
