/**
 * Measures how fast an rpc-server decodes, with llama.cpp itself: a llama-server on this machine runs a
 * generated model entirely on that rpc-server and reports its decode time per token. Divided by the
 * model's layer weights, that is seconds per token per GiB of layers: the planner multiplies it by a
 * real model's layer size. Run while the rpc-server is idle (before the agent announces it); the
 * agent caches the result.
 */
import { existsSync } from 'node:fs'
import { mkdir, rename } from 'node:fs/promises'
import { join } from 'node:path'
import { DEFAULT_TEST_MODEL, readModelInfo, writeTestModel, type TestModelOptions } from '@sollol/gguf'
import { LlamaServerSupervisor, rpcDeviceNames } from './llama-server.js'
import { freePort } from './net-util.js'
import { silentLogger, type Logger } from './log.js'
import { LAN_TIMINGS, type SupervisorTimings } from './timings.js'

/**
 * Attention head sizes every ggml backend has flash-attention kernels for. llama-server always runs with
 * flash attention (llama-server.ts), and over RPC it cannot fall back: the op goes to the remote device,
 * and ggml-cuda aborts the rpc-server on a head size it has no kernel for (`fattn.cu: fatal error`, seen
 * on an H200 with 32-wide heads: CUDA has 40, 64, 72, 80, 96, 112, 128, 256 and a few wider pairs).
 */
export const PORTABLE_HEAD_SIZES: readonly number[] = [64, 128]

/**
 * 8 layers x 256 dims, f32: ~27 MB, big enough that compute outweighs the per-token round trip; 4 heads of
 * 64 so that every backend can run it (v1 had 8 heads of 32: a CUDA rpc-server aborted, and the GPU went
 * unmeasured and was planned as slow).
 */
export const CALIBRATION_MODEL: TestModelOptions = { ...DEFAULT_TEST_MODEL, layers: 8, embd: 256, ff: 768, heads: 4, seed: 7 }
export const CALIBRATION_METHOD =
  'llama-server decode of a generated 8x256 f32 model (heads of 64) over the rpc-server, best of 3 runs of 24 tokens'

export interface CalibrationResult {
  readonly secondsPerGiB: number
  readonly tokensPerSecond: number
  readonly measuredAt: string
  readonly method: string
}

export interface CalibrationOptions {
  readonly llamaServer: string
  /** `host:port` of the rpc-server to measure. */
  readonly endpoint: string
  /** Where the calibration model is kept (generated once). */
  readonly cacheDir: string
  /** One share per device of the server: the whole model on one of them (default: llama.cpp's split). */
  readonly tensorSplit?: readonly number[]
  readonly timings?: SupervisorTimings
  readonly logger?: Logger
}

async function calibrationModel(cacheDir: string): Promise<string> {
  const path = join(cacheDir, 'calibration-8x256-f32-v2.gguf')
  if (!existsSync(path)) {
    await mkdir(cacheDir, { recursive: true })
    const partial = `${path}.${process.pid}.tmp`
    writeTestModel(partial, CALIBRATION_MODEL)
    await rename(partial, path)
  }
  return path
}

export async function calibrateRpcServer(o: CalibrationOptions): Promise<CalibrationResult> {
  const model = await calibrationModel(o.cacheDir)
  const info = await readModelInfo(model)
  const layerGiB = info.layerWeightBytes.reduce((a, b) => a + b, 0) / 2 ** 30
  const server = new LlamaServerSupervisor({
    binary: o.llamaServer,
    model,
    rpc: [o.endpoint],
    ...(o.tensorSplit !== undefined ? { tensorSplit: o.tensorSplit } : {}),
    // the rpc-server's devices only (a GPU of this machine must not join the measurement)
    devices: rpcDeviceNames(o.tensorSplit?.length ?? 1),
    port: await freePort(),
    threads: 1,
    parallel: 1,
    contextSize: 256,
    timings: o.timings ?? LAN_TIMINGS,
    logger: o.logger ?? silentLogger
  })
  await server.start()
  try {
    let best = Infinity
    for (let run = 0; run < 3; run++) {
      const response = await fetch(`${server.url}/completion`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ prompt: 'the river', n_predict: 24, temperature: 0, cache_prompt: false }),
        signal: AbortSignal.timeout(60_000)
      })
      const body = (await response.json()) as { timings?: { predicted_per_token_ms?: number } }
      const ms = body.timings?.predicted_per_token_ms
      if (typeof ms === 'number' && ms > 0) best = Math.min(best, ms)
    }
    if (!Number.isFinite(best)) throw new Error(`calibration of ${o.endpoint}: llama-server reported no decode timings`)
    return {
      secondsPerGiB: best / 1000 / layerGiB,
      tokensPerSecond: 1000 / best,
      measuredAt: new Date().toISOString(),
      method: CALIBRATION_METHOD
    }
  } finally {
    await server.stop()
  }
}
