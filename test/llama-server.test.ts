import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readModelInfo } from '@sollol/gguf'
import { expectedLayerDevices, layerEndpoints, layersPerDevice, plannedLayerEndpoints, tensorSplitForLayerCounts } from '@sollol/llama-cpp'
import { scratch, startLlamaServer, startRpcServers, stopAll } from './helpers/llama.js'
import { waitFor } from './helpers/wait.js'

async function complete(url: string, prompt: string, tokens = 12): Promise<string> {
  const response = await fetch(`${url}/completion`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ prompt, n_predict: tokens, temperature: 0, cache_prompt: false }),
    signal: AbortSignal.timeout(30_000)
  })
  assert.equal(response.status, 200)
  return ((await response.json()) as { content: string }).content
}

const serve = startLlamaServer

test('llama-server over three real rpc-servers answers, and its real split is the planned one', async () => {
  const files = scratch()
  const model = files.model('m.gguf')
  const rpc = await startRpcServers(3)
  const endpoints = rpc.map((r) => r.endpoint)
  try {
    // A planned split (2, 5, 1 layers) and a proportional one (1:2:1) as a user might type it.
    for (const [split, counts] of [
      [tensorSplitForLayerCounts([2, 5, 1]), [2, 5, 1]],
      [
        [1, 2, 1],
        [3, 4, 1]
      ]
    ] as const) {
      const server = await serve(model, rpc, [...split])
      try {
        const text = await complete(server.url, 'once upon a time')
        assert.ok(text.length > 0, 'a completion with text')
        const report = server.loadReport()
        const actual = layerEndpoints(report)
        assert.deepEqual(actual, plannedLayerEndpoints(expectedLayerDevices(split, 8), endpoints), `split ${split.join(',')}`)
        assert.deepEqual(layersPerDevice(expectedLayerDevices(split, 8), 3).perDevice, counts)
        assert.deepEqual(report.offloaded, { layers: 9, of: 9 })
      } finally {
        await server.stop()
      }
    }
  } finally {
    await stopAll(rpc)
    files.cleanup()
  }
})

test('with f32 weights the greedy output is the same on one rpc-server and split over three', async () => {
  const files = scratch()
  const model = files.model('m.gguf')
  const rpc = await startRpcServers(3)
  try {
    const one = await serve(model, rpc.slice(0, 1))
    const single = await complete(one.url, 'the quick river', 16)
    await one.stop()
    const three = await serve(model, rpc, tensorSplitForLayerCounts([3, 3, 2]))
    const split = await complete(three.url, 'the quick river', 16)
    await three.stop()
    assert.equal(split, single)
  } finally {
    await stopAll(rpc)
    files.cleanup()
  }
})

test('a killed rpc-server is reported as a lost RPC peer, not a generic crash', async () => {
  const files = scratch()
  const rpc = await startRpcServers(2)
  try {
    const server = await serve(files.model('m.gguf'), rpc, tensorSplitForLayerCounts([4, 4]))
    const exits: string[] = []
    server.on('exit', (kind) => exits.push(kind))
    process.kill(rpc[1]!.pid ?? -1, 'SIGKILL')
    // llama.cpp notices on the next request; /health alone would still say 200.
    assert.equal(await server.checkLiveness(5000), false)
    const state = await waitFor('llama-server to exit', () => (server.state.kind === 'exited' ? server.state : undefined))
    assert.equal(state.reason, 'rpc-peer-lost')
    // abort(): exit 134 through a shell, SIGABRT when exec'd directly as here
    assert.ok(state.exitCode === 134 || state.signal === 'SIGABRT', `exit ${state.exitCode} ${state.signal}`)
    assert.deepEqual(exits, ['rpc-peer-lost'])
    await server.stop()
  } finally {
    await stopAll(rpc)
    files.cleanup()
  }
})

test('the GGUF reader agrees with what llama-server reports for the same file', async () => {
  const files = scratch()
  const model = files.model('big.gguf', { layers: 12, embd: 256, ff: 512, heads: 8, type: 'f16' })
  const info = await readModelInfo(model)
  const rpc = await startRpcServers(2)
  try {
    const counts = [5, 7]
    const server = await serve(model, rpc, tensorSplitForLayerCounts(counts))
    try {
      const report = server.loadReport()
      const printed = (key: string): number => Number(report.modelInfo.get(key))
      assert.equal(printed('n_layer'), info.layerCount)
      assert.equal(printed('n_ctx_train'), info.contextLength)
      assert.equal(printed('n_embd'), info.embeddingLength)
      assert.equal(printed('n_head'), info.headCount)
      assert.equal(printed('n_head_kv'), info.headCountKv)
      assert.equal(printed('n_ff'), info.feedForwardLength)
      // Weight bytes per rpc-server: its layers, plus the output head on the last one.
      const mib = (bytes: number): number => bytes / 1024 ** 2
      const first = info.layerWeightBytes.slice(0, 5).reduce((a, b) => a + b, 0)
      const second = info.layerWeightBytes.slice(5).reduce((a, b) => a + b, 0) + info.outputBytes
      assert.ok(
        Math.abs((report.modelBufferMiB.get(rpc[0]!.endpoint) ?? -1) - mib(first)) < 0.01,
        `first: log ${report.modelBufferMiB.get(rpc[0]!.endpoint)} vs ${mib(first)}`
      )
      assert.ok(
        Math.abs((report.modelBufferMiB.get(rpc[1]!.endpoint) ?? -1) - mib(second)) < 0.01,
        `second: log ${report.modelBufferMiB.get(rpc[1]!.endpoint)} vs ${mib(second)}`
      )
    } finally {
      await server.stop()
    }
  } finally {
    await stopAll(rpc)
    files.cleanup()
  }
})
