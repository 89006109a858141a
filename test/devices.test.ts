/**
 * A second device in one rpc-server: Mesa's software Vulkan device (lavapipe, `Vulkan0`, its own 2 GiB
 * heap) beside the CPU, loaded from node-llama-cpp's prebuilt Vulkan backend. The holder's rpc-server
 * serves `Vulkan0,CPU`; per-device budgets force the model across the worker's CPU and both devices of
 * the holder. The plan has one --tensor-split entry per RPC device, llama-server's log places every layer
 * where the plan says (per device, no mismatch), and completions come back through the mesh.
 *
 * Needs a Vulkan loader and lavapipe (CI: apt-get install mesa-vulkan-drivers libvulkan1) and setup's
 * loadable build, which then fetches the Vulkan backend.
 */
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { SPLIT_TEST_MODEL, writeTestModel } from '@sollol/gguf'
import { TestNetwork } from './helpers/netns.js'
import { CLI, completeFrom, TestAgent } from './helpers/agents.js'
import { binDirWithVulkan, requireVulkan0, VULKAN_ENV } from './helpers/llama.js'
import { waitFor } from './helpers/wait.js'

const MIB = 2 ** 20

const dir = mkdtempSync(join(tmpdir(), 'sollol-devices-'))
const model = join(dir, 'model.gguf')
writeTestModel(model, SPLIT_TEST_MODEL) // 16 layers of 2.5 MiB
const network = TestNetwork.create([{}, {}, {}])
const [h0, h1, client] = [network.host(0), network.host(1), network.host(2)]
const common = ['--rpc-threads', '1', '--ctx-size', '256']
// setup sets the Vulkan backend aside where no Vulkan GPU is (ours is a software one): a copy of the build with it
const vulkanBin = await binDirWithVulkan(dir)
// Without Vulkan0 the two CPUs (30 MiB each: 11.7 MiB compute reserve + 6 layers) cannot hold 16 layers.
const holder = new TestAgent(h0, dir, [
  ...common,
  ...(vulkanBin !== undefined ? ['--llama-bin-dir', vulkanBin] : []),
  '--model',
  model,
  '--max-memory',
  'Vulkan0=24MiB,CPU=30MiB'
])
const worker = new TestAgent(h1, dir, [...common, '--max-memory', '30MiB'])
const agents = [holder, worker]

before(async () => {
  await requireVulkan0(vulkanBin)
})

after(async () => {
  await Promise.all(agents.map(async (a) => await a.stop()))
  network.destroy()
  if (process.env.SOLLOL_KEEP_TEST_LOGS === undefined) rmSync(dir, { recursive: true, force: true })
})

test('an rpc-server with Vulkan0 and CPU is planned per device; llama-server places the layers as planned and serves', async (t) => {
  holder.start([], VULKAN_ENV)
  worker.start()
  const serving = await waitFor(
    'serving with layers on the Vulkan device',
    () => {
      const v = holder.view()
      return v?.plan?.server.state === 'ready' && v.plan.assignments.some((a) => a.device === 'Vulkan0' && a.layers !== null)
        ? v
        : undefined
    },
    // two calibrations on the software GPU (its shaders compile at the first) and one on each CPU
    { timeoutMs: 240_000 }
  )
  const plan = serving.plan!
  const self = serving.nodes.find((n) => n.peerId === serving.self)!
  assert.deepEqual(
    self.devices.map((d) => [d.name, d.rpcIndex, d.type, d.budget]),
    [
      ['Vulkan0', 0, 'gpu', 24 * MIB],
      ['CPU', 1, 'cpu', 30 * MIB]
    ],
    'the holder announces both devices of its rpc-server with their budgets'
  )
  assert.ok(
    self.devices.every((d) => d.speed !== null && d.speed !== undefined),
    'each device measured alone'
  )
  // worker (1 device) + holder (2 devices): one split entry per RPC device
  assert.equal(plan.tensorSplit.length, 3)
  const holderStages = plan.assignments.filter((a) => a.peerId === serving.self)
  assert.deepEqual(
    holderStages.map((a) => a.device),
    ['Vulkan0', 'CPU']
  )
  assert.ok(
    plan.assignments.every((a) => a.layers !== null),
    JSON.stringify(plan.assignments)
  )
  // what llama-server's log says, per device, is the plan
  assert.equal(plan.mismatch, null)
  for (const a of plan.assignments) assert.deepEqual(a.actualLayers, a.layers, `${a.peerId} ${a.device ?? ''}`)
  assert.deepEqual(
    self.deviceLayers?.map((d) => d.device),
    ['Vulkan0', 'CPU']
  )

  const answer = await completeFrom(client, dir, plan.server.url, 60_000)
  assert.ok(answer.ok, answer.output)

  // the prediction next to llama-server's own measurement of a short decode after the load
  const measured = await waitFor('a measured decode speed', () => holder.view()?.plan?.measuredTokensPerSecond ?? undefined, {
    timeoutMs: 60_000
  })
  t.diagnostic(`predicted ${plan.predictedTokensPerSecond?.toFixed(1)} tok/s, measured ${measured.toFixed(1)} tok/s`)
  t.diagnostic(`device speeds (s/GiB): ${self.devices.map((d) => `${d.name} ${d.speed?.secondsPerGiB.toFixed(3)}`).join(', ')}`)
  const status = String((await h0.run(process.execPath, [CLI, 'status'])).stdout)
  assert.match(status, /predicted \d+ tok\/s, measured \d+ tok\/s/)
  assert.match(status, /Vulkan0 24\.0 MiB, CPU 30\.0 MiB/)
  // which node ends the pipeline (and holds the output) is the planner's choice by measured speed: the
  // status shows the holder's layers per device as planned, whatever the order
  const perDevice = holderStages.map((a) => `${a.device} ${a.layers![0]}-${a.layers![1]}${a.output ? '+out' : ''}`).join(', ')
  assert.match(perDevice, /^Vulkan0 \d+-\d+(\+out)?, CPU \d+-\d+(\+out)?$/)
  assert.ok(status.includes(perDevice), `the status shows "${perDevice}":\n${status}`)
  const dryRun = String((await h0.run(process.execPath, [CLI, 'plan', '--model', model, '--ctx-size', '256'])).stdout)
  assert.match(dryRun, /:50052 Vulkan0/)
})
