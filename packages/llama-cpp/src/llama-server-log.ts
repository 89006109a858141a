/**
 * Reads what llama-server really did from its log (needs `-lv 5` for the per-layer lines). Pure: feed
 * it lines. With `--fit` llama.cpp loads twice (a dry run, then the real load), so later lines win.
 */
import type { Device, LayerDevice } from '@sollol/core'

type DeviceKind = Device['kind']

export interface LoadReport {
  /** Device name (RPC0, CPU, CUDA0...) to endpoint, for RPC devices. */
  readonly deviceEndpoints: ReadonlyMap<string, string>
  /** Device name per layer index (the last index is the output layer). */
  readonly layerDevices: ReadonlyMap<number, string>
  /** Model weight bytes per buffer, keyed by stage (stageKey: endpoint, #device) for RPC buffers and by name (CPU_Mapped...) otherwise. */
  readonly modelBufferMiB: ReadonlyMap<string, number>
  /** KV cache per buffer, the caches of one device added (gemma3's full and sliding-window caches are two). */
  readonly kvBufferMiB: ReadonlyMap<string, number>
  /** Compute buffers per device as reserved (the largest reservation seen). */
  readonly computeBufferMiB: ReadonlyMap<string, number>
  readonly offloaded: { readonly layers: number; readonly of: number } | undefined
  readonly listening: string | undefined
  /** The model's hyper-parameters as llama.cpp read them (`print_info: n_layer = 32` ...). */
  readonly modelInfo: ReadonlyMap<string, string>
}

const DEVICE = /llama_prepare_model_devices: using device (\S+) \(([^)]+)\)/
const LAYER = /load_tensors: layer\s+(\d+) assigned to device ([^,\s]+)/
const OFFLOADED = /load_tensors: offloaded (\d+)\/(\d+) layers/
const BUFFER = /(load_tensors|llama_kv_cache|sched_reserve):\s+(\S+?)(?:\[([^\]]+)\])? (model|KV|compute) buffer size =\s+([\d.]+) MiB/
const PRINT_INFO = /print_info: (\w+)\s+= (.*)$/
const LISTENING = /server is listening on (\S+)/

/**
 * How far loading has come, from the log lines llama-server prints on the way (it prints no percentage
 * of its own when weights are memory-mapped; a line of dots, when it prints one, is its percentage).
 * The fractions are rough weights of each stage on a cluster: uploading the weights to the rpc-servers
 * dominates.
 */
export interface LoadProgress {
  readonly stage: string
  readonly fraction: number
}

const LOAD_STAGES: ReadonlyArray<{ readonly marker: string; readonly stage: string; readonly fraction: number }> = [
  { marker: 'llama_model_loader: loaded meta data', stage: 'reading the model', fraction: 0.05 },
  { marker: 'load_tensors: loading model tensors', stage: 'placing layers', fraction: 0.1 },
  { marker: 'model buffer size', stage: 'uploading weights', fraction: 0.2 },
  { marker: 'llama_context: constructing', stage: 'creating the context', fraction: 0.8 },
  { marker: 'KV buffer size', stage: 'allocating the KV cache', fraction: 0.85 },
  { marker: 'sched_reserve: reserve took', stage: 'reserving compute buffers', fraction: 0.9 },
  { marker: 'server is listening', stage: 'checking a first completion', fraction: 0.95 }
]
const DOTS = /^\.+$/

export class LoadLogParser {
  private progressValue: LoadProgress = { stage: 'starting', fraction: 0 }
  private readonly deviceEndpoints = new Map<string, string>()
  private readonly layerDevices = new Map<number, string>()
  private readonly modelBufferMiB = new Map<string, number>()
  private readonly kvBufferMiB = new Map<string, number>()
  private readonly computeBufferMiB = new Map<string, number>()
  private offloaded: { layers: number; of: number } | undefined
  private listening: string | undefined
  private readonly modelInfo = new Map<string, string>()

  /** Feeds one line. Cheap for the many lines that match nothing (a substring test first). */
  push(line: string): void {
    this.trackProgress(line)
    if (line.includes('load_tensors:')) {
      const layer = LAYER.exec(line)
      if (layer !== null) {
        this.layerDevices.set(Number(layer[1]), layer[2] ?? '')
        return
      }
      const offloaded = OFFLOADED.exec(line)
      if (offloaded !== null) {
        this.offloaded = { layers: Number(offloaded[1]), of: Number(offloaded[2]) }
        return
      }
    }
    if (line.includes('buffer size')) {
      const buffer = BUFFER.exec(line)
      if (buffer !== null) {
        // an RPC buffer is named by the device's index on its server and the endpoint: RPC1[10.0.0.2:50052]
        const remote = /^RPC(\d+)$/.exec(buffer[2] ?? '')
        const key = buffer[3] !== undefined ? stageKey(buffer[3], remote === null ? 0 : Number(remote[1])) : (buffer[2] ?? '')
        const mib = Number(buffer[5])
        if (buffer[4] === 'model') this.modelBufferMiB.set(key, mib)
        else if (buffer[4] === 'KV') this.kvBufferMiB.set(key, (this.kvBufferMiB.get(key) ?? 0) + mib)
        else this.computeBufferMiB.set(key, Math.max(mib, this.computeBufferMiB.get(key) ?? 0))
      }
      return
    }
    if (line.includes('print_info:')) {
      const info = PRINT_INFO.exec(line)
      if (info !== null) this.modelInfo.set(info[1] ?? '', (info[2] ?? '').trim())
      return
    }
    if (line.includes('using device')) {
      const device = DEVICE.exec(line)
      if (device !== null) this.deviceEndpoints.set(device[1] ?? '', device[2] ?? '')
      return
    }
    if (line.includes('server is listening')) this.listening = LISTENING.exec(line)?.[1]
  }

  progress(): LoadProgress {
    return this.progressValue
  }

  private trackProgress(line: string): void {
    if (DOTS.test(line)) {
      // llama.cpp's own progress: one dot per percent of the weights loaded
      const uploaded = Math.min(100, line.length) / 100
      this.progressValue = { stage: 'uploading weights', fraction: 0.2 + 0.6 * uploaded }
      return
    }
    for (const s of LOAD_STAGES) {
      if (s.fraction > this.progressValue.fraction && line.includes(s.marker)) {
        this.progressValue = { stage: s.stage, fraction: s.fraction }
        return
      }
    }
  }

  report(): LoadReport {
    return {
      deviceEndpoints: new Map(this.deviceEndpoints),
      layerDevices: new Map(this.layerDevices),
      modelBufferMiB: new Map(this.modelBufferMiB),
      kvBufferMiB: new Map(this.kvBufferMiB),
      computeBufferMiB: new Map(this.computeBufferMiB),
      offloaded: this.offloaded,
      listening: this.listening,
      modelInfo: new Map(this.modelInfo)
    }
  }
}

/**
 * A place layers run on: the rpc-server's endpoint for its first device, `endpoint#i` for its device i
 * (llama.cpp makes one RPC device per device of a server, numbered RPC0.. across all servers in `--rpc` order).
 */
export const stageKey = (endpoint: string, deviceIndex: number): string => (deviceIndex === 0 ? endpoint : `${endpoint}#${deviceIndex}`)

/** The stage (see stageKey; 'cpu' for the host) each layer ran on, from a report. Index = layer; last = output. */
export function layerEndpoints(report: LoadReport): Array<string | 'cpu'> {
  // a device's index on its server: its rank among the RPC devices of the same endpoint, by global number
  const rpcNumber = (name: string): number => Number(/^RPC(\d+)$/.exec(name)?.[1] ?? Number.NaN)
  const keys = new Map<string, string>()
  for (const [name, endpoint] of report.deviceEndpoints) {
    const index = [...report.deviceEndpoints].filter(([other, e]) => e === endpoint && rpcNumber(other) < rpcNumber(name)).length
    keys.set(name, stageKey(endpoint, index))
  }
  const result: Array<string | 'cpu'> = []
  const count = report.layerDevices.size
  for (let il = 0; il < count; il++) {
    const device = report.layerDevices.get(il)
    if (device === undefined || device === 'CPU') result.push('cpu')
    else result.push(keys.get(device) ?? device)
  }
  return result
}

/** The same shape from a planned assignment (`endpoints`: the stage key of each RPC device, in llama.cpp's order). */
export function plannedLayerEndpoints(devices: readonly LayerDevice[], endpoints: readonly string[]): Array<string | 'cpu'> {
  return devices.map((d) => (d === 'cpu' ? 'cpu' : (endpoints[d] ?? `device${d}`)))
}

/** Contiguous runs `{ endpoint, first, last }` (inclusive), for humans and status. */
export function layerRanges(perLayer: ReadonlyArray<string>): Array<{ endpoint: string; first: number; last: number }> {
  const ranges: Array<{ endpoint: string; first: number; last: number }> = []
  perLayer.forEach((endpoint, layer) => {
    const current = ranges[ranges.length - 1]
    if (current !== undefined && current.endpoint === endpoint && current.last === layer - 1) current.last = layer
    else ranges.push({ endpoint, first: layer, last: layer })
  })
  return ranges
}

/**
 * The rpc-servers (endpoints as given to --rpc; `endpoint#i` for a server's device i) that could not allocate a buffer llama-server asked for,
 * from lines such as `alloc_tensor_range: failed to allocate RPC0[10.0.0.2:50052] buffer of size 538044416`
 * and `llama_model_load: error loading model: unable to allocate RPC0[10.0.0.2:50052] buffer` (model
 * weights, KV cache and compute buffers alike). `host` when llama-server's own machine ran out.
 */
export function allocationFailures(output: readonly string[]): Array<{ endpoint: string | 'host'; bytes: number | undefined }> {
  const found = new Map<string, number | undefined>()
  for (const line of output) {
    const m = /(?:failed|unable) to allocate (RPC(\d+)\[([^\]]+)\]|CPU\S*) buffer(?: of size (\d+))?/.exec(line)
    if (m === null) continue
    // RPC<device index on its server>[endpoint]: the stage (stageKey) that ran out
    const endpoint = m[3] !== undefined ? stageKey(m[3], Number(m[2] ?? 0)) : 'host'
    const bytes = m[4] !== undefined ? Number(m[4]) : undefined
    found.set(endpoint, Math.max(bytes ?? 0, found.get(endpoint) ?? 0) || undefined)
  }
  return [...found].map(([endpoint, bytes]) => ({ endpoint, bytes }))
}

/**
 * Why llama.cpp can never load this model file, when its output says so (a start with another plan would
 * fail the same way, so the model is dropped rather than retried): an architecture this build does not
 * know, or a tensor type it cannot read. Undefined for every other failure (those may pass with a new plan).
 */
export function unloadableModel(output: readonly string[]): string | undefined {
  for (const line of output) {
    const arch = /unknown model architecture: '([^']*)'/.exec(line)
    if (arch !== null) return `this llama.cpp build cannot load the model's architecture \`${arch[1]}\``
    const type = /tensor '([^']*)' has invalid ggml type (\d+)/.exec(line)
    if (type !== null) return `this llama.cpp build cannot read the model's tensor \`${type[1]}\` (ggml type ${type[2]} is unknown to it)`
  }
  return undefined
}

/** A compute backend's abort, read from an rpc-server's output: which backend, and its line. */
export interface BackendAbort {
  /** The device kind whose backend aborted. */
  readonly kind: DeviceKind
  /** The abort as ggml printed it, from the source file's name on: `ggml-vulkan.cpp:9709: GGML_ASSERT(dmmv != nullptr) failed`. */
  readonly line: string
}

/** ggml's backend folders by the device kind agents announce. */
const BACKEND_KINDS: Readonly<Record<string, DeviceKind>> = { vulkan: 'vulkan', cuda: 'cuda', hip: 'rocm', metal: 'metal', cpu: 'cpu' }

/**
 * The abort of a compute backend in an rpc-server's output (`.../ggml/src/ggml-vulkan/ggml-vulkan.cpp:9709:
 * GGML_ASSERT(dmmv != nullptr) failed`): a graph the backend cannot run, such as a weight type it has no
 * kernel for (Vulkan and TQ1_0). Aborts of the RPC layer itself, of glibc or of ggml's core name no
 * backend: undefined (a crash like any other). The last one wins. Pure.
 */
export function backendAbort(output: readonly string[]): BackendAbort | undefined {
  let found: BackendAbort | undefined
  for (const line of output) {
    const m = /ggml-([a-z]+)\/(ggml-[\w.-]+:\d+: .*(?:GGML_ASSERT|GGML_ABORT|fatal error|error).*)$/i.exec(line)
    const kind = m === null ? undefined : BACKEND_KINDS[m[1]!.toLowerCase()]
    if (m !== null && kind !== undefined) found = { kind, line: m[2]!.trim().slice(0, 300) }
  }
  return found
}

export type LlamaServerExitKind = 'stopped' | 'rpc-peer-lost' | 'model-load-failed' | 'port-in-use' | 'crashed'

/**
 * Why llama-server ended. Exit 134 (abort) with llama.cpp's RPC message is a lost rpc-server: the
 * remedy is a new plan without it, not a restart with the same list.
 */
export function classifyExit(
  exitCode: number | undefined,
  signal: string | undefined,
  output: readonly string[],
  stopRequested: boolean
): LlamaServerExitKind {
  const said = (text: string): boolean => output.some((line) => line.includes(text))
  if (said('Remote RPC server crashed') || said('RPC server crashed') || ((exitCode === 134 || signal === 'SIGABRT') && said('ggml-rpc')))
    return 'rpc-peer-lost'
  if (stopRequested && (signal === 'SIGTERM' || signal === 'SIGKILL' || exitCode === 0 || exitCode === 143)) return 'stopped'
  if (said("couldn't bind HTTP server socket") || said('Address already in use')) return 'port-in-use'
  if (said('failed to load model') || said('error loading model')) return 'model-load-failed'
  if (stopRequested) return 'stopped'
  return 'crashed'
}
