/**
 * Real llama.cpp for the end-to-end tests: the binaries `sollol-agent setup` put in place (CI runs it
 * before the tests; nothing is built here), generated models, and rpc-servers on free loopback ports.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { computeHeadroomBytes } from '@sollol/core'
import { DEFAULT_TEST_MODEL, readModelInfo, writeTestModel, type TestModelOptions } from '@sollol/gguf'
import {
  FAST_TEST_TIMINGS,
  freePort,
  LlamaServerSupervisor,
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

/**
 * llama-server over `rpc` with `counts` layers per rpc-server (the output head on the last): the model buffer
 * llama-server reports per rpc-server next to what the GGUF reader predicts for those layers, and one
 * completion. The caller asserts; `stop` ends the server.
 */
export async function serveSplit(
  model: string,
  rpc: readonly RpcServerSupervisor[],
  counts: readonly number[],
  contextSize = 256
): Promise<{ loggedMiB: number[]; predictedMiB: number[]; tokens: number; stop: () => Promise<void> }> {
  const info = await readModelInfo(model)
  const { llamaServer } = await llamaBinaries()
  const server = new LlamaServerSupervisor({
    binary: llamaServer,
    model,
    rpc: rpc.map((r) => r.endpoint),
    port: await freePort(),
    threads: 1,
    contextSize,
    parallel: 1,
    tensorSplit: tensorSplitForLayerCounts(counts),
    timings: FAST_TEST_TIMINGS
  })
  await server.start()
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
export async function budgetForLayers(model: string, layers: number, contextSize: number): Promise<number> {
  const info = await readModelInfo(model)
  const perLayer = Math.max(...info.layerWeightBytes) + info.kvBytesPerTokenPerLayer * contextSize
  const bytes =
    computeHeadroomBytes({ ...info, id: model, name: info.name ?? model }) + info.outputBytes + info.embeddingBytes + layers * perLayer
  return Math.ceil(bytes / MIB)
}
