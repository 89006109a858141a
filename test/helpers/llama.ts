/**
 * Real llama.cpp for the end-to-end tests: the binaries `sollol-agent setup` put in place (CI runs it
 * before the tests; nothing is built here), generated models, and rpc-servers on free loopback ports.
 */
import assert from 'node:assert/strict'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { cp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { computeHeadroomBytes, kvBytesPerToken, kvBytesPerTokenByLayer, kvCellsPerLayer, type KvCacheTypes } from '@sollol/core'
import { DEFAULT_TEST_MODEL, readModelInfo, writeTestModel, type TestModelOptions } from '@sollol/gguf'
import {
  FAST_TEST_TIMINGS,
  freePort,
  listRpcServerDevices,
  LlamaServerSupervisor,
  OPTIONAL_MODULES_DIR,
  resolveBinaries,
  RpcServerSupervisor,
  tensorSplitForLayerCounts,
  type LlamaBinaries
} from '@sollol/llama-cpp'

const MIB = 1024 ** 2

let binaries: Promise<LlamaBinaries> | undefined

/** The binaries users get from `sollol-agent setup`; fails (never builds) when setup has not run. */
export async function llamaBinaries(): Promise<LlamaBinaries> {
  binaries ??= resolveBinaries({ allowBuild: false })
  return await binaries
}

/**
 * A folder of this build's binaries with the Vulkan backend beside them. Setup sets that backend aside
 * (`optional/`) on a machine without a Vulkan GPU, so that servers do not load the Vulkan drivers; a test
 * that runs a software Vulkan device (lavapipe, with GGML_VK_VISIBLE_DEVICES) gets a copy of the build
 * with it in place (ggml looks for backends beside the running binary). Undefined when setup fetched none.
 */
export async function binDirWithVulkan(into: string): Promise<string | undefined> {
  const entry = dirname((await llamaBinaries()).rpcServer)
  if (existsSync(join(entry, 'libggml-vulkan.so'))) return entry
  const setAside = join(entry, OPTIONAL_MODULES_DIR, 'libggml-vulkan.so')
  if (!existsSync(setAside)) return undefined
  const dir = join(into, 'llama-bin-vulkan')
  await cp(entry, dir, {
    recursive: true,
    verbatimSymlinks: true,
    filter: (source) => !source.startsWith(join(entry, OPTIONAL_MODULES_DIR))
  })
  await cp(setAside, join(dir, 'libggml-vulkan.so'))
  return dir
}

/** ggml lists CPU-type Vulkan devices (lavapipe) only when told to. */
export const VULKAN_ENV = { GGML_VK_VISIBLE_DEVICES: '0' }

/** Fails with what to install when the rpc-server of `vulkanBin` (else of the build) lists no Vulkan0. */
export async function requireVulkan0(vulkanBin: string | undefined): Promise<void> {
  const binary = vulkanBin !== undefined ? join(vulkanBin, 'ggml-rpc-server') : (await llamaBinaries()).rpcServer
  const devices = await listRpcServerDevices(binary, VULKAN_ENV)
  assert.ok(
    devices.some((d) => d.name === 'Vulkan0'),
    `the rpc-server lists no Vulkan0 (it lists ${devices.map((d) => d.name).join(', ') || 'nothing'}): ` +
      'install mesa-vulkan-drivers and libvulkan1, then run `npx sollol-agent setup` (it fetches the prebuilt Vulkan backend)'
  )
}

export interface Scratch {
  readonly dir: string
  model: (name: string, options?: Partial<TestModelOptions>) => string
  cleanup: () => void
}

export function scratch(): Scratch {
  const dir = mkdtempSync(join(tmpdir(), 'sollol-e2e-'))
  return {
    dir,
    model(name, options = {}) {
      const path = join(dir, name)
      writeTestModel(path, { ...DEFAULT_TEST_MODEL, ...options })
      return path
    },
    cleanup: () => rmSync(dir, { recursive: true, force: true })
  }
}

/** Starts `count` real rpc-servers on free loopback ports, one thread each (2-core machines). */
export async function startRpcServers(count: number): Promise<RpcServerSupervisor[]> {
  const { rpcServer } = await llamaBinaries()
  const servers: RpcServerSupervisor[] = []
  for (let i = 0; i < count; i++) {
    const server = new RpcServerSupervisor({ binary: rpcServer, port: await freePort(), threads: 1, timings: FAST_TEST_TIMINGS })
    await server.start()
    servers.push(server)
  }
  return servers
}

export async function stopAll(servers: ReadonlyArray<{ stop: () => Promise<void> }>): Promise<void> {
  await Promise.all(servers.map(async (s) => await s.stop()))
}

/** A real llama-server over `rpc` (one thread, one slot), started and ready; `tensorSplit` as llama.cpp takes it. */
export async function startLlamaServer(
  model: string,
  rpc: readonly RpcServerSupervisor[],
  tensorSplit?: readonly number[],
  contextSize = 512,
  cacheTypes?: KvCacheTypes
): Promise<LlamaServerSupervisor> {
  const { llamaServer } = await llamaBinaries()
  const server = new LlamaServerSupervisor({
    binary: llamaServer,
    model,
    rpc: rpc.map((r) => r.endpoint),
    port: await freePort(),
    threads: 1,
    contextSize,
    parallel: 1,
    ...(tensorSplit !== undefined ? { tensorSplit: [...tensorSplit] } : {}),
    ...(cacheTypes !== undefined ? { cacheTypes } : {}),
    timings: FAST_TEST_TIMINGS
  })
  await server.start()
  return server
}

/**
 * llama-server over `rpc` with `counts` layers per rpc-server (the output head on the last): the model buffer
 * llama-server reports per rpc-server next to what the GGUF reader predicts for those layers, and one
 * completion. The caller asserts; `stop` ends the server.
 */
export async function serveSplit(
  model: string,
  rpc: readonly RpcServerSupervisor[],
  counts: readonly number[],
  contextSize = 256,
  cacheTypes?: KvCacheTypes
): Promise<{
  loggedMiB: number[]
  predictedMiB: number[]
  /** KV cache per rpc-server: llama-server's log, and the planner's estimate (layers x bytes per token x context). */
  kvLoggedMiB: number[]
  kvPredictedMiB: number[]
  /** Compute buffers per rpc-server as llama-server reserved them, and the planner's headroom for them. */
  computeLoggedMiB: number[]
  computeHeadroomMiB: number
  tokens: number
  stop: () => Promise<void>
}> {
  const info = await readModelInfo(model)
  const server = await startLlamaServer(model, rpc, tensorSplitForLayerCounts(counts), contextSize, cacheTypes)
  try {
    const report = server.loadReport()
    let first = 0
    const predictedMiB = counts.map((count, i) => {
      const bytes = info.layerWeightBytes.slice(first, first + count).reduce((a, b) => a + b, 0)
      first += count
      return (bytes + (i === counts.length - 1 ? info.outputBytes : 0)) / MIB
    })
    const response = await fetch(`${server.url}/completion`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'hello', n_predict: 8, temperature: 0 }),
      signal: AbortSignal.timeout(30_000)
    })
    const body = (await response.json()) as { tokens_predicted?: number }
    return {
      loggedMiB: rpc.map((r) => report.modelBufferMiB.get(r.endpoint) ?? -1),
      predictedMiB,
      kvLoggedMiB: rpc.map((r) => report.kvBufferMiB.get(r.endpoint) ?? -1),
      // per layer: a sliding-window layer's cache is smaller (one slot here: startLlamaServer runs --parallel 1)
      kvPredictedMiB: (() => {
        // per layer as the coordinator prices it: cells x bytes per token (KV heads may differ by layer)
        const cells = kvCellsPerLayer(info.layerCount, contextSize, info.slidingWindow, 1)
        const perToken = kvBytesPerTokenByLayer(info, cacheTypes) ?? cells.map(() => kvBytesPerToken(info, cacheTypes))
        let at = 0
        return counts.map((count) => {
          const bytes = cells.slice(at, at + count).reduce((sum, c, i) => sum + c * perToken[at + i]!, 0)
          at += count
          return bytes / MIB
        })
      })(),
      computeLoggedMiB: rpc.map((r) => report.computeBufferMiB.get(r.endpoint) ?? -1),
      computeHeadroomMiB: computeHeadroomBytes({ ...info, id: model, name: info.name ?? model }, contextSize) / MIB,
      tokens: response.status === 200 ? (body.tokens_predicted ?? 0) : 0,
      stop: async () => await server.stop()
    }
  } catch (err) {
    await server.stop()
    throw err
  }
}

/**
 * A `--max-memory` (MiB) with which an agent holds `layers` layers of `model` and no more, by the planner's
 * own arithmetic (compute headroom, output head, input embeddings, the largest layer and its KV cache):
 * agents offering it for fewer layers than the model has must split it.
 */
export async function budgetForLayers(model: string, layers: number, contextSize: number, cacheTypes?: KvCacheTypes): Promise<number> {
  const info = await readModelInfo(model)
  const perLayer = Math.max(...info.layerWeightBytes) + kvBytesPerToken(info, cacheTypes) * contextSize
  const bytes =
    computeHeadroomBytes({ ...info, id: model, name: info.name ?? model }, contextSize) +
    info.outputBytes +
    info.embeddingBytes +
    layers * perLayer
  return Math.ceil(bytes / MIB)
}

type Served = Awaited<ReturnType<typeof serveSplit>>

/**
 * The planner's estimates against what llama-server allocated per rpc-server: weights within 0.01 MiB; the
 * KV cache within 5 % (sliding-window layers and KV heads per layer included); the compute buffers within the
 * planner's headroom, and that headroom within 3x of them.
 */
export function checkEstimates(what: string, served: Served): void {
  served.loggedMiB.forEach((logged, i) => {
    const predicted = served.predictedMiB[i]!
    assert.ok(Math.abs(logged - predicted) < 0.01, `${what} weights on server ${i}: llama-server ${logged} MiB, reader ${predicted} MiB`)
  })
  served.kvLoggedMiB.forEach((logged, i) => {
    const predicted = served.kvPredictedMiB[i]!
    assert.ok(
      logged >= predicted * 0.95 && logged <= predicted * 1.05,
      `${what} KV on server ${i}: llama-server ${logged} MiB, estimate ${predicted} MiB`
    )
  })
  // the documented margin (docs/estimates.md): never below what llama.cpp reserved, at most 3x it + 2 MiB
  // (the headroom assumes a full 512-token micro-batch; at contexts under 512 llama.cpp's is the context)
  served.computeLoggedMiB.forEach((logged, i) => {
    assert.ok(
      logged <= served.computeHeadroomMiB && served.computeHeadroomMiB <= 3 * logged + 2,
      `${what} compute buffers on server ${i}: ${logged} MiB, headroom ${served.computeHeadroomMiB} MiB`
    )
  })
}

/** One line for a test's log (and the estimates table in docs/estimates.md). */
export function estimateLine(served: Served): string {
  const list = (xs: number[]): string => xs.map((x) => x.toFixed(2)).join(' / ')
  return (
    `weights llama-server ${list(served.loggedMiB)} MiB, reader ${list(served.predictedMiB)}; ` +
    `KV ${list(served.kvLoggedMiB)}, estimate ${list(served.kvPredictedMiB)}; ` +
    `compute ${list(served.computeLoggedMiB)}, headroom ${served.computeHeadroomMiB.toFixed(2)}`
  )
}
