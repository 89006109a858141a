/**
 * Measures how fast an rpc-server decodes, with llama.cpp itself: a llama-server on this machine runs a
 * generated model entirely on that rpc-server and reports its decode time per token, for two models of
 * the same layers (8 and 24 of them). The difference prices each GiB of layers, the rest is what a token
 * costs there whatever it holds (cost-model.ts, fitTokenCost): the planner multiplies the first by a real
 * model's layer size and adds the second per device. Run while the rpc-server is idle (before the agent
 * announces it); the agent caches the result.
 */
import { existsSync } from 'node:fs'
import { mkdir, rename } from 'node:fs/promises'
import { join } from 'node:path'
import { fitTokenCost, type CalibrationShape } from '@sollol/core'
import { DEFAULT_TEST_MODEL, readModelInfo, writeTestModel, type TestModelOptions } from '@sollol/gguf'
import { LlamaServerSupervisor, rpcDeviceNames } from './llama-server.js'
import { freePort } from './net-util.js'
import { withMachineLock } from './machine-lock.js'
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
 * 8 layers x 256 dims, f32: ~27 MB, big enough that compute outweighs the per-token round trip on a CPU;
 * 4 heads of 64 so that every backend can run it (v1 had 8 heads of 32: a CUDA rpc-server aborted, and the
 * GPU went unmeasured and was planned as slow).
 */
export const CALIBRATION_MODEL: TestModelOptions = { ...DEFAULT_TEST_MODEL, layers: 8, embd: 256, ff: 768, heads: 4, seed: 7 }
/**
 * The same layers, three times as many (~81 MB): the second size that separates what a token costs on a
 * device whatever it holds from what each byte of layers adds (cost-model.ts, fitTokenCost).
 */
export const CALIBRATION_MODEL_LARGE: TestModelOptions = { ...CALIBRATION_MODEL, layers: 24 }
export const CALIBRATION_METHOD =
  'llama-server decode of generated 8- and 24-layer 256-wide f32 models (heads of 64) over the rpc-server, best of 3 runs each; fixed + per-GiB fit (one size above 50 ms a token)'

/** Tokens per run of the small model; the large one's runs are shortened on a slow device (at least 4). */
const SMALL_RUN_TOKENS = 24
/** About how long the large model's three runs may take together. */
const LARGE_RUNS_SECONDS = 1.5
/**
 * A device slower than this per token of the small model is priced from that model alone: next to its
 * per-byte cost a fixed part cannot matter, and the second load is what costs there (lavapipe, a software
 * GPU at 0.3 s a token: 35 s more, most of it compiling shaders again).
 */
const TWO_SIZES_BELOW_SECONDS = 0.05

/** The two models of a calibration in a model's shape (calibration-shape.ts). */
export function shapedCalibrationModels(shape: CalibrationShape): { small: TestModelOptions; large: TestModelOptions } {
  const small = { ...CALIBRATION_MODEL, embd: shape.embd, ff: shape.ff, heads: shape.heads, type: shape.type, layers: shape.smallLayers }
  return { small, large: { ...small, layers: shape.largeLayers } }
}

export const shapedCalibrationMethod = (shape: CalibrationShape): string =>
  `llama-server decode of generated ${shape.smallLayers}- and ${shape.largeLayers}-layer ${shape.key} models (the cluster model's width and weight type) over the rpc-server, best of 3 runs each; fixed + per-GiB fit; prompt of ${PROMPT_TOKENS} tokens`

export interface CalibrationResult {
  /** What one more GiB of layers adds to a token (the fitted per-byte cost). */
  readonly secondsPerGiB: number
  /** What a token costs on the device whatever it holds (0 when the fit could not tell). */
  readonly fixedSecondsPerToken: number
  /** Of the small calibration model. */
  readonly tokensPerSecond: number
  /**
   * Prompt processing: seconds per prompt token per GiB of layers (the large model's prompt of
   * PROMPT_TOKENS tokens, best of its runs); absent when not measured (the generic calibration).
   */
  readonly promptSecondsPerGiB?: number
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
  /** Measure in this model's shape (and its prompt processing) instead of the generic 256-wide f32 layers. */
  readonly shape?: CalibrationShape
}

async function calibrationModel(cacheDir: string, options: TestModelOptions): Promise<string> {
  const name =
    options.type === 'f32' && options.ff === CALIBRATION_MODEL.ff
      ? `calibration-${options.layers}x${options.embd}-f32-v2.gguf`
      : `calibration-${options.layers}x${options.embd}x${options.ff}-${options.type}.gguf`
  const path = join(cacheDir, name)
  if (!existsSync(path)) {
    await mkdir(cacheDir, { recursive: true })
    const partial = `${path}.${process.pid}.tmp`
    writeTestModel(partial, options)
    await rename(partial, path)
  }
  return path
}

/** Prompt tokens of the prompt-processing runs: a batch, as a chat's context or a document is processed. */
export const PROMPT_TOKENS = 128
/**
 * A prompt of PROMPT_TOKENS token ids (llama-server takes ids as a prompt): the generated vocabulary's
 * characters and words, past its control and byte tokens; text would tokenize to an unknown count.
 */
const LONG_PROMPT = Array.from({ length: PROMPT_TOKENS }, (_, i) => 260 + (i % 150))

interface RunTimings {
  /** Best seconds per generated token. */
  readonly decode: number
  /** Best seconds per prompt token of the long prompt (when asked for). */
  readonly prompt: number | undefined
}

/**
 * Best (lowest) seconds per token llama-server reports over `runs` runs of `tokens`, the model on the
 * rpc-server; with `prompt`, also the best prompt time per token of a PROMPT_TOKENS-token prompt.
 */
async function decodeSecondsPerToken(o: CalibrationOptions, model: string, tokens: number, runs: number): Promise<number> {
  return (await runTimings(o, model, tokens, runs, false)).decode
}

async function runTimings(o: CalibrationOptions, model: string, tokens: number, runs: number, prompt: boolean): Promise<RunTimings> {
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
    contextSize: prompt ? 512 : 256,
    timings: o.timings ?? LAN_TIMINGS,
    logger: o.logger ?? silentLogger
  })
  await server.start()
  try {
    let best = Infinity
    let bestPrompt = Infinity
    for (let run = 0; run < runs; run++) {
      const response = await fetch(`${server.url}/completion`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        // ignore_eos: random quants may pick the end token early, and a run of 2 tokens times nothing (the
        // generic models' calibration is kept as it was measured and cached)
        body: JSON.stringify({
          prompt: prompt ? LONG_PROMPT : 'the river',
          n_predict: tokens,
          temperature: 0,
          cache_prompt: false,
          ...(o.shape !== undefined ? { ignore_eos: true } : {})
        }),
        signal: AbortSignal.timeout(120_000)
      })
      const body = (await response.json()) as {
        timings?: { predicted_per_token_ms?: number; prompt_per_token_ms?: number; prompt_n?: number }
      }
      const ms = body.timings?.predicted_per_token_ms
      if (typeof ms === 'number' && ms > 0) best = Math.min(best, ms)
      const promptMs = body.timings?.prompt_per_token_ms
      if (prompt && typeof promptMs === 'number' && promptMs > 0 && (body.timings?.prompt_n ?? 0) >= PROMPT_TOKENS / 2)
        bestPrompt = Math.min(bestPrompt, promptMs)
    }
    if (!Number.isFinite(best)) throw new Error(`calibration of ${o.endpoint}: llama-server reported no decode timings`)
    return { decode: best / 1000, prompt: Number.isFinite(bestPrompt) ? bestPrompt / 1000 : undefined }
  } finally {
    await server.stop()
  }
}

const layerBytesOf = async (model: string): Promise<number> => (await readModelInfo(model)).layerWeightBytes.reduce((a, b) => a + b, 0)

/** How long a measurement in a model's shape waits for another agent's on this machine (machine-lock.ts). */
const SHAPED_LOCK_WAIT_MS = 5 * 60_000

export async function calibrateRpcServer(o: CalibrationOptions): Promise<CalibrationResult> {
  // The generic models are measured at each agent's start, before it announces anything: agents started
  // together measure together (their fixed part absorbs it). A measurement in a model's shape comes later,
  // and takes turns with the others on this machine, so that test hosts that share cores are priced alone.
  if (o.shape !== undefined)
    return await withMachineLock(join(o.cacheDir, 'measuring.lock'), { waitMs: SHAPED_LOCK_WAIT_MS }, async () => await measure(o))
  return await measure(o)
}

async function measure(o: CalibrationOptions): Promise<CalibrationResult> {
  const shaped = o.shape !== undefined ? shapedCalibrationModels(o.shape) : undefined
  const smallOptions = shaped?.small ?? CALIBRATION_MODEL
  const largeOptions = shaped?.large ?? CALIBRATION_MODEL_LARGE
  const small = await calibrationModel(o.cacheDir, smallOptions)
  const smallSample = { layerBytes: await layerBytesOf(small), secondsPerToken: await decodeSecondsPerToken(o, small, SMALL_RUN_TOKENS, 3) }
  // one size (the fit's own case of two equal samples): its average price, no fixed part
  let fit = fitTokenCost(smallSample, smallSample)
  let promptSample = undefined as { layerBytes: number; secondsPerToken: number } | undefined
  if (largeOptions.layers > smallOptions.layers && smallSample.secondsPerToken < TWO_SIZES_BELOW_SECONDS) {
    const large = await calibrationModel(o.cacheDir, largeOptions)
    const ratio = largeOptions.layers / smallOptions.layers
    // the large model's token takes up to `ratio` times as long: fewer tokens on a slower device
    const largeTokens = Math.max(4, Math.min(SMALL_RUN_TOKENS, Math.round(LARGE_RUNS_SECONDS / (3 * ratio * smallSample.secondsPerToken))))
    const timings = await runTimings(o, large, largeTokens, 3, shaped !== undefined)
    const largeSample = { layerBytes: await layerBytesOf(large), secondsPerToken: timings.decode }
    if (shaped !== undefined) {
      // the small model once more, after the large: a machine busy at the start (agents starting beside
      // it) slowed the first small runs only, which read as a large fixed part and a small per-byte price
      // (seen: 8 ms and 0.016 s/GiB where idle gave 0.2 ms and 0.040)
      const again = await decodeSecondsPerToken(o, small, SMALL_RUN_TOKENS, 2)
      smallSample.secondsPerToken = Math.min(smallSample.secondsPerToken, again)
    }
    fit = fitTokenCost(smallSample, largeSample)
    if (timings.prompt !== undefined) promptSample = { layerBytes: largeSample.layerBytes, secondsPerToken: timings.prompt }
  } else if (shaped !== undefined) {
    // one size (a slow device, or a layer too big for two): its prompt in a run of its own
    const timings = await runTimings(o, small, 4, 2, true)
    if (timings.prompt !== undefined) promptSample = { layerBytes: smallSample.layerBytes, secondsPerToken: timings.prompt }
  }
  return {
    secondsPerGiB: fit.secondsPerGiB,
    fixedSecondsPerToken: fit.fixedSecondsPerToken,
    tokensPerSecond: 1 / smallSample.secondsPerToken,
    ...(promptSample !== undefined ? { promptSecondsPerGiB: (promptSample.secondsPerToken / promptSample.layerBytes) * 2 ** 30 } : {}),
    measuredAt: new Date().toISOString(),
    method: o.shape !== undefined ? shapedCalibrationMethod(o.shape) : CALIBRATION_METHOD
  }
}
