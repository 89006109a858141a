/**
 * Quantized files, as people run them: Q8_0, Q6_K and Q4_K_M made by llama.cpp's own `llama-quantize` (built by
 * `setup` beside the servers) from a generated f16 model, and a shard set made by `llama-gguf-split`.
 * - For each type, llama-server over two real rpc-servers loads the file with a planned split, answers, and
 *   reports per rpc-server the weight bytes our GGUF reader predicts for the layers (and output head) there.
 * - The shard set reads as the file it was split from (same layers, sizes and content).
 * - A Q4_K_M file is served by a mesh of two agents on test hosts, neither of which can hold it alone,
 *   through the OpenAI API of the agent that does not hold the file.
 */
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { readModelInfo, type ModelInfo } from '@sollol/gguf'
import type { LlamaTools } from '@sollol/llama-cpp'
import {
  budgetForLayers,
  checkEstimates,
  estimateLine,
  llamaBinaries,
  scratch,
  serveSplit,
  startRpcServers,
  stopAll,
  type Scratch
} from './helpers/llama.js'
import { TestNetwork } from './helpers/netns.js'
import { CLI, completeFrom, TestAgent } from './helpers/agents.js'
import { waitFor } from './helpers/wait.js'

const TYPES = ['Q8_0', 'Q6_K', 'Q4_K_M'] as const
// rows of 512 and 1536: every K-quant block (256 values) fits, so no tensor falls back to another type
const SHAPE = { layers: 16, embd: 512, ff: 1536, heads: 8, type: 'f16' } as const

let files: Scratch
let tools: LlamaTools
let f16: string
const quantized = new Map<string, string>()

before(async () => {
  const binaries = await llamaBinaries()
  if (binaries.tools === undefined)
    throw new Error('no llama-quantize in the llama.cpp build: run `npx sollol-agent setup` (it builds the model tools)')
  tools = binaries.tools
  files = scratch()
  f16 = files.model('f16.gguf', SHAPE)
  for (const type of TYPES) {
    const out = join(files.dir, `${type}.gguf`)
    execFileSync(tools.quantize, [f16, out, type, '2'], { stdio: 'pipe' })
    quantized.set(type, out)
  }
})

after(() => files?.cleanup())

const mib = (bytes: number): number => bytes / 1024 ** 2
const sum = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0)

for (const type of TYPES) {
  test(`${type}: llama-server over two rpc-servers serves it, and holds per server the weight bytes the reader predicts`, async () => {
    const model = quantized.get(type)!
    const info = await readModelInfo(model)
    const source = await readModelInfo(f16)
    assert.equal(info.layerCount, SHAPE.layers)
    assert.ok(info.totalWeightBytes < source.totalWeightBytes * (type === 'Q8_0' ? 0.56 : 0.45), `${type} is smaller than f16`)
    const rpc = await startRpcServers(2)
    try {
      const served = await serveSplit(model, rpc, [7, 9])
      await served.stop()
      assert.ok(served.tokens > 0, `${type}: a completion`)
      checkEstimates(type, served)
      console.log(
        `${type}: ${mib(info.totalWeightBytes).toFixed(1)} MiB of weights (f16 ${mib(source.totalWeightBytes).toFixed(1)}); ${estimateLine(served)}`
      )
    } finally {
      await stopAll(rpc)
    }
  })
}

test('a q8_0 KV cache (keys and values; flash attention on, as llama.cpp requires) is allocated as planned', async () => {
  const model = quantized.get('Q4_K_M')!
  const rpc = await startRpcServers(2)
  try {
    const q8 = { k: 'q8_0', v: 'q8_0' } as const
    const served = await serveSplit(model, rpc, [7, 9], 256, q8)
    await served.stop()
    assert.ok(served.tokens > 0, 'a completion')
    checkEstimates('Q4_K_M, q8_0 KV', served)
    console.log(`Q4_K_M with a q8_0 KV cache: ${estimateLine(served)}`)
  } finally {
    await stopAll(rpc)
  }
})

test('a shard set made by llama-gguf-split reads as the file it was split from', async () => {
  const model = quantized.get('Q4_K_M')!
  const prefix = join(files.dir, 'shards', 'q4')
  execFileSync('mkdir', ['-p', join(files.dir, 'shards')])
  execFileSync(tools.ggufSplit, ['--split', '--split-max-tensors', '40', model, prefix], { stdio: 'pipe' })
  const shards = readdirSync(join(files.dir, 'shards')).sort()
  assert.ok(shards.length >= 3, `several shards: ${shards.join(', ')}`)
  const whole: ModelInfo = await readModelInfo(model)
  const split = await readModelInfo(join(files.dir, 'shards', shards[0]!))
  assert.equal(split.layerCount, whole.layerCount)
  assert.deepEqual(split.layerWeightBytes, whole.layerWeightBytes)
  assert.equal(split.outputBytes, whole.outputBytes)
  assert.equal(split.totalWeightBytes, whole.totalWeightBytes)
  const onDisk = sum(shards.map((s) => statSync(join(files.dir, 'shards', s)).size))
  assert.ok(onDisk >= whole.totalWeightBytes, 'the shards hold every weight')
})

test('a Q4_K_M file is served by two agents, neither of which can hold it alone', async () => {
  const model = quantized.get('Q4_K_M')!
  const ctx = 256
  // what one agent needs for 10 of the 16 layers: the model needs both
  // with a q8_0 KV cache, planned as such (the coordinator passes --cache-type-k/v to llama-server)
  const budget = await budgetForLayers(model, 10, ctx, { k: 'q8_0', v: 'q8_0' })
  const network = TestNetwork.create([{}, {}])
  const common = ['--rpc-threads', '1', '--ctx-size', String(ctx), '--max-memory', `${budget}MiB`, '--rpc-speed', '2']
  common.push('--cache-type-k', 'q8_0', '--cache-type-v', 'q8_0')
  const holder = new TestAgent(network.host(0), files.dir, [...common, '--model', model])
  const worker = new TestAgent(network.host(1), files.dir, common)
  try {
    holder.start()
    worker.start()
    const view = await waitFor(
      'a Q4_K_M plan over both agents, served',
      () => {
        const v = worker.view()
        return v?.plan?.server.state === 'ready' && v.plan.assignments.filter((a) => a.layers !== null).length === 2 ? v : undefined
      },
      { timeoutMs: 120_000, explain: () => JSON.stringify({ plan: worker.view()?.plan ?? null, nodes: worker.view()?.nodes.length }) }
    )
    const answer = await completeFrom(network.host(1), files.dir, 'http://127.0.0.1:7491')
    assert.ok(answer.ok, answer.output)
    // the coordinator's llama-server runs with the cache types it planned with
    const serverArgs = readdirSync('/proc')
      .filter((p) => /^\d+$/.test(p))
      .map((p) => {
        try {
          return readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0')
        } catch {
          return []
        }
      })
      .find((argv) => argv[0]?.endsWith('llama-server') === true && argv.includes(model))
    assert.ok(serverArgs !== undefined, 'the llama-server of the plan runs')
    const after = (flag: string): string | undefined => serverArgs[serverArgs.indexOf(flag) + 1]
    assert.deepEqual([after('--cache-type-k'), after('--cache-type-v'), after('--flash-attn')], ['q8_0', 'q8_0', 'on'])
    // `plan --model` with the same cache types plans what the coordinator planned
    const dry = await network
      .host(0)
      .run(process.execPath, [
        CLI,
        'plan',
        '--model',
        model,
        '--ctx-size',
        String(ctx),
        '--cache-type-k',
        'q8_0',
        '--cache-type-v',
        'q8_0',
        '--json'
      ])
    assert.equal(dry.exitCode, 0, String(dry.stderr))
    const planned = (JSON.parse(String(dry.stdout)) as { nodes: Array<{ layers: [number, number] | null }> }).nodes.map((n) => n.layers)
    assert.deepEqual(
      planned,
      view.plan!.assignments.filter((a) => a.layers !== null).map((a) => a.layers)
    )
    console.log(
      `Q4_K_M over the mesh: ${view.plan!.assignments.map((a) => JSON.stringify(a.layers)).join(' + ')} with ${budget} MiB offered each`
    )
  } finally {
    await Promise.all([holder.stop(), worker.stop()])
    network.destroy()
  }
})
