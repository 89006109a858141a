/**
 * Warm failover: the coordinator is lost (SIGKILL), the other model holder takes over in a new term, and its
 * load sends (almost) no weights over the LAN, because the worker's rpc-server kept running through the
 * fence and its tensor cache holds every layer it was sent the first time. The bytes are counted by the
 * worker's gate (status `weightsOverLan`, per node `rpc.load`, `/metrics`), not estimated.
 */
import { after, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DEFAULT_TEST_MODEL, writeTestModel } from '@sollol/gguf'
import type { ClusterView } from '@sollol/core'
import { pidsOf, TestNetwork } from './helpers/netns.js'
import { completeFrom, TestAgent } from './helpers/agents.js'
import { waitFor } from './helpers/wait.js'

const dir = mkdtempSync(join(tmpdir(), 'sollol-warm-'))
const model = join(dir, 'model.gguf')
// 4 layers of 134 MB: every layer tensor is above llama.cpp's 10 MiB hash threshold (see tensor-cache.test.ts)
writeTestModel(model, { ...DEFAULT_TEST_MODEL, layers: 4, embd: 1664, ff: 4480, heads: 8, weightStd: 0.05 })
const modelBytes = statSync(model).size
const network = TestNetwork.create([{}, {}, {}, {}])
const common = ['--rpc-threads', '1', '--ctx-size', '256']
// The model holders offer too little for a layer: every layer is planned on the worker, before and after.
const holders = [0, 1].map((i) => new TestAgent(network.host(i), dir, [...common, '--model', model, '--max-memory', '64MiB']))
const worker = new TestAgent(network.host(2), dir, [...common, '--max-memory', '2GiB'])
const agents = [...holders, worker]
const client = network.host(3)

after(async () => {
  await Promise.all(agents.map(async (a) => await a.stop()))
  network.destroy()
  if (process.env.SOLLOL_KEEP_TEST_LOGS === undefined) rmSync(dir, { recursive: true, force: true })
})

const METRIC = `
const r = await fetch(process.argv[2] + '/metrics', { signal: AbortSignal.timeout(5000) })
process.stdout.write(await r.text())
`

test('after the coordinator is lost, the new term loads the same layers from the worker cache: < 1 % of the bytes cross', async () => {
  for (const a of agents) a.start()
  const first = await waitFor(
    'the cluster serving with every layer on the worker, its load done',
    () => {
      const v = worker.view()
      return v?.plan?.server.state === 'ready' && v.weightsOverLan?.done === true ? v : undefined
    },
    { timeoutMs: 300_000, intervalMs: 250 }
  )
  const workerId = first.self
  const onWorker = first.plan!.assignments.find((a) => a.peerId === workerId)
  assert.deepEqual(onWorker?.layers, [0, 3], `every layer on the worker: ${JSON.stringify(first.plan!.assignments)}`)
  // the plan is priced in the model's shape: the worker measured its rpc-server with generated 1664-wide
  // (rounded up to 1792) f32 layers before the first plan, which waited for it; the holders offer less
  // than a layer, so nothing is asked of them
  assert.equal(first.plan!.pricedWith, '1792x4608-f32', JSON.stringify(first.plan))
  assert.equal(first.nodes.find((n) => n.peerId === workerId)?.modelSpeed?.shape, '1792x4608-f32')
  assert.equal(typeof first.plan!.predictedPromptTokensPerSecond, 'number')
  const cold = first.weightsOverLan!.bytes
  assert.ok(cold >= modelBytes * 0.95, `the first load sent ${cold} of ${modelBytes} bytes over the LAN`)

  const coordinatorId = first.coordinator!.peerId
  const coordinator = holders.find((a) => a.view()?.self === coordinatorId)!
  const successor = holders.find((a) => a !== coordinator)!
  const rpcPids = pidsOf(worker.host, 'ggml-rpc-server')
  assert.equal(rpcPids.length, 1)

  coordinator.signal('SIGKILL')
  const killedAt = Date.now()
  const second = await waitFor(
    'the other holder serving a new term, its load done',
    () => {
      const v = worker.view()
      const load = v?.nodes.find((n) => n.peerId === workerId)?.rpc.load
      return v?.coordinator?.peerId !== undefined &&
        v.coordinator.peerId !== coordinatorId &&
        v.plan?.server.state === 'ready' &&
        load !== undefined &&
        load !== null &&
        Date.parse(load.startedAt) >= killedAt &&
        v.weightsOverLan?.done === true
        ? v
        : undefined
    },
    { timeoutMs: 60_000, intervalMs: 100 }
  )
  const failoverMs = Date.now() - killedAt
  assert.equal(second.coordinator!.peerId, successor.view()?.self)
  assert.ok(second.coordinator!.term > first.coordinator!.term, 'a new term')
  assert.deepEqual(second.plan!.assignments.find((a) => a.peerId === workerId)?.layers, [0, 3], 'the same layers on the worker')
  const warm = second.weightsOverLan!.bytes
  assert.ok(warm < modelBytes * 0.01, `the second load sent ${warm} of ${modelBytes} bytes over the LAN`)
  assert.ok(second.weightsOverLan!.tensorsFromCache >= 4 * 7, `tensors from the cache: ${second.weightsOverLan!.tensorsFromCache}`)
  assert.deepEqual(pidsOf(worker.host, 'ggml-rpc-server'), rpcPids, 'the worker rpc-server kept running (same pid)')

  const answer = await completeFrom(client, dir, second.plan!.server.url, 30_000)
  assert.ok(answer.ok, answer.output)

  // The same numbers from the worker's /metrics.
  writeFileSync(join(dir, 'metrics.mjs'), METRIC)
  const metrics = String((await worker.host.run(process.execPath, [join(dir, 'metrics.mjs'), 'http://127.0.0.1:7491'])).stdout)
  const value = (name: string): number => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(metrics)?.[1])
  assert.equal(value('sollol_rpc_last_load_weight_bytes'), warm)
  assert.ok(value('sollol_rpc_weight_bytes_received_total') >= cold + warm, metrics.slice(0, 2000))
  assert.ok(value('sollol_rpc_tensor_cache_bytes') >= modelBytes * 0.95, 'the worker cache holds the layers')

  const view = worker.view() as ClusterView
  console.log(
    `warm failover: ${(modelBytes / 1e6).toFixed(0)} MB model; first load sent ${(cold / 1e6).toFixed(1)} MB over the LAN, ` +
      `after the coordinator's SIGKILL the new term sent ${(warm / 1e6).toFixed(2)} MB (${((100 * warm) / modelBytes).toFixed(2)} %) ` +
      `and served after ${failoverMs} ms; worker rpc-server pid ${rpcPids[0]} kept; term ${view.coordinator?.term}`
  )
})
