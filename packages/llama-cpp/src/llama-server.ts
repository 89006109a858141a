/**
 * Runs `llama-server --rpc ...` with a given split and tells the truth about it: readiness is a real
 * completion (llama.cpp's /health answers 200 while an RPC peer is dead or frozen), the split it really
 * used is read back from its log, and an exit for a lost rpc-server is its own kind.
 */
import { EventEmitter } from 'node:events'
import { isProcessFrozen, OutputRing, spawnChild, stopChild, type Child } from './child.js'
import { classifyExit, LoadLogParser, type LlamaServerExitKind, type LoadProgress, type LoadReport } from './llama-server-log.js'
import { silentLogger, type Logger } from './log.js'
import { isPortInUse } from './net-util.js'
import { PortInUseError, ProcessStartError } from './rpc-server.js'
import { LAN_TIMINGS, type SupervisorTimings } from './timings.js'
import { type KvCacheTypes } from '@sollol/core'

export interface LlamaServerOptions {
  readonly binary: string
  readonly model: string
  /** rpc-server endpoints `host:port`, in device order (RPC0 first). */
  readonly rpc: readonly string[]
  /** `-ngl`: 'all' offloads every layer and the output; a number offloads the last N. */
  readonly gpuLayers?: number | 'all' | 'auto'
  /** One share per device in `rpc` order; omitted = llama.cpp's default (by free memory). */
  readonly tensorSplit?: readonly number[]
  /**
   * `--device`: the devices llama-server may use (rpcDeviceNames). A GPU of llama-server's own machine is
   * used through that machine's rpc-server, where its memory is planned, never a second time directly.
   */
  readonly devices?: readonly string[]
  readonly contextSize?: number
  /** KV cache element types (`--cache-type-k/v`); a quantized V cache turns flash attention on, as llama.cpp requires. */
  readonly cacheTypes?: KvCacheTypes
  readonly host?: string
  readonly port: number
  /** CPU threads of the llama-server host. */
  readonly threads?: number
  /** Concurrent request slots. */
  readonly parallel?: number
  readonly apiKey?: string
  /** More arguments, appended after ours (never before `--rpc`). */
  readonly extraArgs?: readonly string[]
  readonly timings?: SupervisorTimings
  readonly logger?: Logger
  readonly env?: NodeJS.ProcessEnv
}

export type LlamaServerState =
  | { readonly kind: 'stopped' }
  | { readonly kind: 'loading'; readonly since: number }
  | { readonly kind: 'ready'; readonly pid: number; readonly url: string; readonly loadMs: number }
  | {
      readonly kind: 'exited'
      readonly reason: LlamaServerExitKind
      readonly exitCode: number | undefined
      readonly signal: string | undefined
      readonly lastOutput: readonly string[]
    }

export interface LlamaServerEvents {
  state: [LlamaServerState]
  exit: [LlamaServerExitKind]
}

/** Formats a share for `--tensor-split` without float noise. */
const formatShare = (share: number): string => String(Math.round(share * 1e6) / 1e6)

/** llama.cpp's names of the first `count` RPC devices (numbered across the `--rpc` servers in order). Pure. */
export const rpcDeviceNames = (count: number): string[] => Array.from({ length: count }, (_, i) => `RPC${i}`)

export function llamaServerArgs(o: LlamaServerOptions): string[] {
  // --rpc is processed while arguments are parsed: it must come before anything naming an RPC device.
  const args: string[] = []
  if (o.rpc.length > 0) args.push('--rpc', o.rpc.join(','))
  args.push('--model', o.model)
  args.push('--host', o.host ?? '127.0.0.1', '--port', String(o.port))
  args.push('--n-gpu-layers', String(o.gpuLayers ?? 'all'))
  if (o.devices !== undefined && o.devices.length > 0) args.push('--device', o.devices.join(','))
  if (o.tensorSplit !== undefined && o.tensorSplit.length > 0) args.push('--tensor-split', o.tensorSplit.map(formatShare).join(','))
  if (o.contextSize !== undefined) args.push('--ctx-size', String(o.contextSize))
  if (o.cacheTypes !== undefined) args.push('--cache-type-k', o.cacheTypes.k, '--cache-type-v', o.cacheTypes.v)
  // Flash attention always on: the planner prices its compute buffers (computeHeadroomBytes). Without it
  // every head's attention scores are materialized (3-5x the buffers at 4096 cells), and llama.cpp's `auto`
  // is not a choice we could plan for: over RPC it turns on today only because RPC devices claim every op.
  // A quantized V cache needs it anyway (llama.cpp refuses to start without it).
  args.push('--flash-attn', 'on')
  if (o.threads !== undefined) args.push('--threads', String(o.threads))
  if (o.parallel !== undefined) args.push('--parallel', String(o.parallel))
  // the API key goes through the environment (LLAMA_API_KEY, see start()): argv is readable by every user in /proc
  // --fit off: our split and context are explicit, and fit would load the model twice to check them.
  // -lv 5: the per-layer "assigned to device" lines that show the real split.
  args.push('--fit', 'off', '--metrics', '--no-warmup', '--log-verbosity', '5')
  args.push(...(o.extraArgs ?? []))
  return args
}

export class LlamaServerSupervisor extends EventEmitter<LlamaServerEvents> {
  private readonly timings: SupervisorTimings
  private readonly log: Logger
  private readonly output = new OutputRing(400)
  private parser = new LoadLogParser()
  private child: Child | undefined
  private stateValue: LlamaServerState = { kind: 'stopped' }
  private stopRequested = false
  readonly url: string

  constructor(private readonly options: LlamaServerOptions) {
    super()
    this.timings = options.timings ?? LAN_TIMINGS
    this.log = (options.logger ?? silentLogger).child({ component: 'llama-server', port: options.port })
    const host = options.host === undefined || options.host === '0.0.0.0' ? '127.0.0.1' : options.host
    this.url = `http://${host}:${options.port}`
  }

  get state(): LlamaServerState {
    return this.stateValue
  }
  get pid(): number | undefined {
    return this.child?.pid
  }
  recentOutput(lines?: number): string[] {
    return this.output.tail(lines)
  }
  /** How far loading has come (meaningful while the state is `loading`). */
  loadProgress(): LoadProgress {
    return this.parser.progress()
  }
  /** What the log says llama.cpp did (devices, per-layer placement, buffers). */
  loadReport(): LoadReport {
    return this.parser.report()
  }

  private setState(state: LlamaServerState): void {
    this.stateValue = state
    this.emit('state', state)
  }

  /** Starts it and resolves once a real completion succeeded. Rejects (and leaves nothing running) otherwise. */
  async start(): Promise<void> {
    if (this.child !== undefined) return
    const host = this.options.host ?? '127.0.0.1'
    if (await isPortInUse(host, this.options.port)) throw new PortInUseError(host, this.options.port)
    this.stopRequested = false
    this.parser = new LoadLogParser()
    const startedAt = Date.now()
    this.setState({ kind: 'loading', since: startedAt })
    const args = llamaServerArgs(this.options)
    this.log.info(
      { rpc: this.options.rpc, tensorSplit: this.options.tensorSplit, gpuLayers: this.options.gpuLayers },
      'starting llama-server'
    )
    const child = spawnChild(
      this.options.binary,
      args,
      (line) => {
        this.output.push(line)
        this.parser.push(line)
      },
      this.options.apiKey !== undefined ? { ...this.options.env, LLAMA_API_KEY: this.options.apiKey } : this.options.env
    )
    this.child = child
    let exited = false
    void child.then((result) => {
      exited = true
      this.onExit(child, result.exitCode, result.signal)
    })

    const deadline = startedAt + this.timings.readyTimeoutMs
    while (!exited && Date.now() < deadline) {
      if ((await this.healthy()) && (await this.completes(this.timings.livenessTimeoutMs))) break
      await new Promise((resolve) => setTimeout(resolve, this.timings.readyPollMs))
    }
    if (exited) {
      const result = await child
      throw new ProcessStartError(
        `llama-server exited while loading (${classifyExit(result.exitCode, result.signal, this.output.tail(), false)}, code ${String(result.exitCode)})`,
        result.exitCode,
        result.signal,
        this.output.tail(20)
      )
    }
    if (Date.now() >= deadline) {
      await this.stop()
      throw new ProcessStartError(
        `llama-server did not answer a completion within ${this.timings.readyTimeoutMs} ms`,
        undefined,
        undefined,
        this.output.tail(20)
      )
    }
    const loadMs = Date.now() - startedAt
    this.setState({ kind: 'ready', pid: child.pid ?? -1, url: this.url, loadMs })
    this.log.info({ loadMs, url: this.url }, 'llama-server ready')
  }

  private async healthy(): Promise<boolean> {
    try {
      const response = await fetch(`${this.url}/health`, { signal: AbortSignal.timeout(2000) })
      await response.body?.cancel()
      return response.status === 200
    } catch {
      return false
    }
  }

  /** A completion request to this llama-server (with its API key), for its own checks. */
  private async complete(body: Record<string, unknown>, timeoutMs: number): Promise<Response> {
    const headers: Record<string, string> = { 'content-type': 'application/json' }
    if (this.options.apiKey !== undefined) headers.authorization = `Bearer ${this.options.apiKey}`
    return await fetch(`${this.url}/completion`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ ...body, cache_prompt: false }),
      signal: AbortSignal.timeout(timeoutMs)
    })
  }

  /** One real token through every backend; the only check that notices a dead or frozen rpc-server. */
  private async completes(timeoutMs: number): Promise<boolean> {
    try {
      const response = await this.complete({ prompt: 'ok', n_predict: 1 }, timeoutMs)
      await response.text()
      return response.status === 200
    } catch {
      return false
    }
  }

  /**
   * Decode speed as llama-server measures it: one completion of `tokens` tokens (end of text ignored), its
   * `timings.predicted_per_token_ms`. Undefined when it did not answer in time or reported no timings.
   */
  async measureDecode(tokens = 16, timeoutMs = 60_000): Promise<number | undefined> {
    try {
      const response = await this.complete({ prompt: 'the river', n_predict: tokens, ignore_eos: true, temperature: 0 }, timeoutMs)
      const body = (await response.json()) as { timings?: { predicted_per_token_ms?: number } }
      const ms = body.timings?.predicted_per_token_ms
      return typeof ms === 'number' && ms > 0 ? 1000 / ms : undefined
    } catch {
      return undefined
    }
  }

  /** True while the process is stopped (SIGSTOP): it cannot answer, and needs no timeout to tell. */
  isFrozen(): boolean {
    return isProcessFrozen(this.child?.pid)
  }

  /**
   * Liveness: while requests run and llama-server's decode counter moved since the last check, it is alive
   * (a check completion would only slow the users' requests down); otherwise a 1-token completion within
   * the timeout, the only check that notices a dead or frozen rpc-server.
   */
  async checkLiveness(timeoutMs = this.timings.livenessTimeoutMs): Promise<boolean> {
    if (this.stateValue.kind !== 'ready') return false
    if (await this.busyAndProgressing(timeoutMs)) return true
    return await this.completes(timeoutMs)
  }

  private lastDecodes: number | undefined

  private async busyAndProgressing(timeoutMs: number): Promise<boolean> {
    try {
      const headers: Record<string, string> = {}
      if (this.options.apiKey !== undefined) headers.authorization = `Bearer ${this.options.apiKey}`
      const response = await fetch(`${this.url}/metrics`, { headers, signal: AbortSignal.timeout(timeoutMs) })
      const text = await response.text()
      const decodes = prometheusValue(text, 'llamacpp:n_decode_total')
      const processing = prometheusValue(text, 'llamacpp:requests_processing')
      const previous = this.lastDecodes
      this.lastDecodes = decodes
      return processing !== undefined && processing > 0 && decodes !== undefined && previous !== undefined && decodes > previous
    } catch {
      return false
    }
  }

  /** Stops it (SIGTERM, then SIGKILL after the grace period). Idempotent. */
  async stop(): Promise<void> {
    this.stopRequested = true
    const child = this.child
    if (child !== undefined) await stopChild(child, this.timings.stopGraceMs)
  }

  private onExit(child: Child, exitCode: number | undefined, signal: string | undefined): void {
    if (this.child !== child) return
    this.child = undefined
    const reason = classifyExit(exitCode, signal, this.output.tail(), this.stopRequested)
    if (reason === 'stopped') {
      this.setState({ kind: 'stopped' })
    } else {
      this.log.warn({ reason, exitCode, signal, lastOutput: this.output.tail(5) }, 'llama-server exited')
      this.setState({ kind: 'exited', reason, exitCode, signal, lastOutput: this.output.tail(20) })
    }
    this.emit('exit', reason)
  }
}

/** The value of an unlabelled Prometheus sample (`name 12`), or undefined. */
export function prometheusValue(text: string, name: string): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith(name + ' ')) {
      const value = Number(line.slice(name.length + 1).trim())
      return Number.isFinite(value) ? value : undefined
    }
  }
  return undefined
}
