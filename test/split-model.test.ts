/**
 * A split GGUF (`name-00001-of-00003.gguf`...) is one model: the holder reads every shard's header (the plan
 * counts all layers), announces one content id for the set, gives llama-server the first shard, and the
 * cluster serves it over two nodes. `model-info` on the first shard describes the whole model.
 */
import { after, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { SPLIT_TEST_MODEL, writeSplitTestModel } from '@sollol/gguf'
import { TestNetwork } from './helpers/netns.js'
import { CLI, completeFrom, TestAgent } from './helpers/agents.js'
import { waitFor } from './helpers/wait.js'

const dir = mkdtempSync(join(tmpdir(), 'sollol-split-'))
const shards = writeSplitTestModel(join(dir, 'model'), 3, SPLIT_TEST_MODEL)
const network = TestNetwork.create([{}, {}, {}])
const common = ['--rpc-threads', '1', '--ctx-size', '256', '--max-memory', '48MiB']
const holder = new TestAgent(network.host(0), dir, [...common, '--model', shards[0]!])
const worker = new TestAgent(network.host(1), dir, common)
const agents = [holder, worker]

after(async () => {
  await Promise.all(agents.map(async (a) => await a.stop()))
  network.destroy()
  if (process.env.SOLLOL_KEEP_TEST_LOGS === undefined) rmSync(dir, { recursive: true, force: true })
})

test('a model split in three shards is planned whole and served over two nodes', async () => {
  for (const a of agents) a.start()
  const view = await waitFor(
    'serving the split model over both nodes',
    () => {
      const v = holder.view()
      return v?.plan?.server.state === 'ready' && v.plan.assignments.filter((a) => a.layers !== null).length === 2 ? v : undefined
    },
    { timeoutMs: 90_000 }
  )
  const layers = view.plan!.assignments.flatMap((a) => (a.layers === null ? [] : [a.layers]))
  assert.equal(
    layers.reduce((n, [first, last]) => n + last - first + 1, 0),
    16,
    `all 16 layers planned: ${JSON.stringify(layers)}`
  )
  assert.equal(view.plan!.mismatch, null, 'llama-server placed the layers as planned')
  const answer = await completeFrom(network.host(2), dir, view.plan!.server.url)
  assert.ok(answer.ok, answer.output)
  const info = await network.host(0).run(process.execPath, [CLI, 'model-info', shards[0]!, '--json'])
  assert.equal((JSON.parse(String(info.stdout)) as { layerCount: number }).layerCount, 16)
})
