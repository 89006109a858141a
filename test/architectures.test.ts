/**
 * Architectures besides llama, from the generator (`test-model --arch`): qwen2 (attention biases), qwen3 (q/k
 * norms), gemma3 (sliding-window layers, post-norms, tied embeddings) and qwen3moe (a mixture of experts).
 * Each one:
 * - loads in llama-server over two real rpc-servers with a planned split, which holds per server the
 *   weight bytes the GGUF reader predicts, and answers;
 * - is served by a mesh of two agents on test hosts that must split it, through the OpenAI API of the agent
 *   that does not hold the file.
 */
import { after, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { readModelInfo, TEST_ARCHITECTURES } from '@sollol/gguf'
import { budgetForLayers, checkEstimates, estimateLine, scratch, serveSplit, startRpcServers, stopAll } from './helpers/llama.js'
import { TestNetwork } from './helpers/netns.js'
import { completeFrom, TestAgent } from './helpers/agents.js'
import { waitFor } from './helpers/wait.js'

const LAYERS = 8
const CTX = 256
const files = scratch()
const network = TestNetwork.create([{}, {}])
after(() => {
  network.destroy()
  files.cleanup()
})

for (const arch of TEST_ARCHITECTURES.filter((a) => a !== 'llama')) {
  test(`${arch}: split over two rpc-servers as planned, and served by a mesh of two agents`, async () => {
    const model = files.model(`${arch}.gguf`, { arch, layers: LAYERS, embd: 256, ff: 512, heads: 8, type: 'f16' })
    const info = await readModelInfo(model)
    assert.equal(info.architecture, arch)
    assert.equal(info.layerCount, LAYERS)

    const rpc = await startRpcServers(2)
    let served: Awaited<ReturnType<typeof serveSplit>>
    try {
      // a context of 1024 cells: gemma3 sliding-window layers get fewer (window + batch, rounded), which shows
      served = await serveSplit(model, rpc, [3, 5], 1024)
      await served.stop()
      assert.ok(served.tokens > 0, `${arch}: a completion over RPC`)
      checkEstimates(arch, served)
    } finally {
      await stopAll(rpc)
    }

    // through the mesh: each agent can hold 5 of the 8 layers, so the plan needs both
    const budget = await budgetForLayers(model, 5, CTX)
    const dir = join(files.dir, arch)
    mkdirSync(dir)
    const common = ['--rpc-threads', '1', '--ctx-size', String(CTX), '--max-memory', `${budget}MiB`, '--rpc-speed', '2']
    const holder = new TestAgent(network.host(0), dir, [...common, '--model', model])
    const worker = new TestAgent(network.host(1), dir, common)
    try {
      holder.start()
      worker.start()
      const view = await waitFor(
        `a ${arch} plan over both agents, served`,
        () => {
          const v = worker.view()
          return v?.plan?.server.state === 'ready' && v.plan.assignments.filter((a) => a.layers !== null).length === 2 ? v : undefined
        },
        { timeoutMs: 120_000, explain: () => JSON.stringify({ plan: worker.view()?.plan ?? null, nodes: worker.view()?.nodes.length }) }
      )
      const answer = await completeFrom(network.host(1), dir, 'http://127.0.0.1:7491')
      assert.ok(answer.ok, answer.output)
      console.log(
        `${arch}: ${estimateLine(served)}; mesh layers ${view.plan!.assignments.map((a) => JSON.stringify(a.layers)).join(' + ')}`
      )
    } finally {
      await Promise.all([holder.stop(), worker.stop()])
    }
  })
}
