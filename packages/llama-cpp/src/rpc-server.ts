/**
 * Runs one `ggml-rpc-server` and keeps it running: readiness by TCP connect (its exit codes lie: a
 * failed bind exits 0), a port clash detected before start, restart with backoff after a crash, recent
 * output kept, a clean stop, and no survival past the agent (see child.ts).
 */
import { EventEmitter } from 'node:events'
import { canConnect, connectHost, isPortInUse } from './net-util.js'
import { isProcessFrozen, OutputRing, spawnChild, stopChild, type Child } from './child.js'
import { silentLogger, type Logger } from './log.js'
import { LAN_TIMINGS, restartDelayMs, type SupervisorTimings } from './timings.js'
import { ExitCode, SollolError } from '@sollol/core'

export interface RpcServerOptions {
  readonly binary: string
  /** IPv4 literal (rpc-server rejects names). Loopback unless the agent deliberately exposes it. */
  readonly host?: string
  readonly port?: number
  readonly threads?: number
  /** Devices to serve, e.g. ['CPU'] or ['CUDA0', 'CUDA1']; rpc-server's default is all of them. */
  readonly devices?: readonly string[]
  /** Keep pushed tensors in a local cache (`-c`), so a reload of the same model is faster. */
  readonly cache?: boolean
  readonly timings?: SupervisorTimings
  readonly logger?: Logger
  /** Extra environment, e.g. LLAMA_CACHE for where `-c` stores tensors. */
  readonly env?: NodeJS.ProcessEnv
}

export type RpcServerState =
  | { readonly kind: 'stopped' }
  | { readonly kind: 'starting'; readonly attempt: number }
  | { readonly kind: 'ready'; readonly pid: number; readonly since: number }
  | {
      readonly kind: 'restarting'
      readonly exitCode: number | undefined
      readonly signal: string | undefined
      readonly restartInMs: number
      readonly restarts: number
    }
  | { readonly kind: 'failed'; readonly reason: string }

export interface RpcServerEvents {
  state: [RpcServerState]
  line: [string]
}

export class PortInUseError extends SollolError {
  constructor(
    readonly host: string,
    readonly port: number
  ) {
    super(`Port ${port} on ${host} is already in use: stop what listens there or choose another port (--rpc-port)`, ExitCode.FAILURE)
  }
}

/** The lines that explain a failure: the last ones saying error/failed, else the last three. */
export function summarizeOutput(output: readonly string[]): string {
  const lines = output.filter((l) => l.trim() !== '')
  const errors = lines.filter((l) => /error|failed|fatal|abort/i.test(l))
  return (errors.length > 0 ? errors.slice(-2) : lines.slice(-3)).map((l) => l.trim()).join(' | ')
}

export class ProcessStartError extends SollolError {
  constructor(
    message: string,
    /** The child's exit code (the process's own is `exitCode`, from the base class). */
    readonly childExitCode: number | undefined,
    readonly signal: string | undefined,
    readonly output: readonly string[]
  ) {
    const last = summarizeOutput(output)
    super(last === '' ? message : `${message}; last output: ${last}`, ExitCode.FAILURE)
  }
}

export function rpcServerArgs(options: RpcServerOptions): string[] {
  const args = ['--host', options.host ?? '127.0.0.1', '--port', String(options.port ?? 50052)]
  if (options.threads !== undefined) args.push('--threads', String(options.threads))
  if (options.devices !== undefined && options.devices.length > 0) args.push('--device', options.devices.join(','))
  if (options.cache === true) args.push('--cache')
  return args
}

export class RpcServerSupervisor extends EventEmitter<RpcServerEvents> {
  readonly host: string
  readonly port: number
  private readonly timings: SupervisorTimings
  private readonly log: Logger
  private readonly output = new OutputRing()
  /** The output of the current (or last ended) run only: what explains why that run ended. */
  private runOutput = new OutputRing()
  private child: Child | undefined
  private stateValue: RpcServerState = { kind: 'stopped' }
  private wanted = false
  private restarts = 0
  private consecutiveCrashes = 0
  private restartTimer: NodeJS.Timeout | undefined

  constructor(private readonly options: RpcServerOptions) {
    super()
    this.host = options.host ?? '127.0.0.1'
    this.port = options.port ?? 50052
    this.timings = options.timings ?? LAN_TIMINGS
    this.log = (options.logger ?? silentLogger).child({ component: 'rpc-server', port: this.port })
  }

  get state(): RpcServerState {
    return this.stateValue
  }
  get pid(): number | undefined {
    return this.child?.pid
  }
  /** How often it was restarted after a crash since start(). */
  get restartCount(): number {
    return this.restarts
  }
  get endpoint(): string {
    return `${connectHost(this.host)}:${this.port}`
  }
  /**
   * True while the process is stopped (SIGSTOP, a debugger): it accepts TCP connections through the
   * kernel but answers nothing. Read from /proc, so it never disturbs the server (Linux; false elsewhere).
   */
  isFrozen(): boolean {
    return isProcessFrozen(this.child?.pid)
  }

  /** The output of the current run, or of the run that just ended (until the next one starts). */
  lastRunOutput(): string[] {
    return this.runOutput.tail()
  }

  recentOutput(lines?: number): string[] {
    return this.output.tail(lines)
  }

  /** Starts the server and resolves once it accepts connections. Idempotent. */
  async start(): Promise<void> {
    if (this.wanted) return
    this.wanted = true
    this.restarts = 0
    this.consecutiveCrashes = 0
    try {
      await this.launch(1)
    } catch (err) {
      this.wanted = false
      this.setState({ kind: 'failed', reason: (err as Error).message })
      throw err
    }
  }

  /**
   * Resolves once it accepts connections again (at once when it does), false after `timeoutMs` or when it
   * stopped or failed: a client that made it crash waits here for the restart before the next client.
   */
  async whenReady(timeoutMs: number): Promise<boolean> {
    // ready and answering; a process that just died may not have been reaped yet (still `ready`)
    if (this.stateValue.kind === 'ready' && (await canConnect(connectHost(this.host), this.port, 1000))) return true
    if (!this.wanted) return false
    return await new Promise((resolve) => {
      const done = (ready: boolean): void => {
        clearTimeout(timer)
        this.off('state', onState)
        resolve(ready)
      }
      const onState = (state: RpcServerState): void => {
        if (state.kind === 'ready') done(true)
        else if (state.kind === 'stopped' || state.kind === 'failed') done(false)
      }
      const timer = setTimeout(() => done(false), timeoutMs)
      this.on('state', onState)
    })
  }

  /** Stops it (SIGTERM, then SIGKILL after the grace period). Idempotent. */
  async stop(): Promise<void> {
    this.wanted = false
    clearTimeout(this.restartTimer)
    const child = this.child
    if (child !== undefined) await stopChild(child, this.timings.stopGraceMs)
    this.child = undefined
    this.setState({ kind: 'stopped' })
  }

  private setState(state: RpcServerState): void {
    this.stateValue = state
    this.emit('state', state)
  }

  private async launch(attempt: number): Promise<void> {
    if (await isPortInUse(this.host, this.port)) throw new PortInUseError(this.host, this.port)
    this.setState({ kind: 'starting', attempt })
    this.runOutput = new OutputRing()
    const args = rpcServerArgs(this.options)
    this.log.debug({ binary: this.options.binary, args }, 'starting rpc-server')
    const child = spawnChild(
      this.options.binary,
      args,
      (line) => {
        this.output.push(line)
        this.runOutput.push(line)
        this.emit('line', line)
      },
      this.options.env
    )
    this.child = child
    let exited = false
    void child.then((result) => {
      exited = true
      this.onExit(child, result.exitCode, result.signal)
    })

    const deadline = Date.now() + this.timings.readyTimeoutMs
    while (!exited && Date.now() < deadline) {
      if (await canConnect(connectHost(this.host), this.port, this.timings.readyPollMs * 4)) break
      await new Promise((resolve) => setTimeout(resolve, this.timings.readyPollMs))
    }
    if (exited || this.child !== child) {
      const result = await child
      throw new ProcessStartError(
        `rpc-server exited during start (code ${String(result.exitCode)}, signal ${String(result.signal)})`,
        result.exitCode,
        result.signal,
        this.output.tail(20)
      )
    }
    if (Date.now() >= deadline) {
      await stopChild(child, this.timings.stopGraceMs)
      throw new ProcessStartError(
        `rpc-server did not accept connections on ${this.endpoint} within ${this.timings.readyTimeoutMs} ms`,
        undefined,
        undefined,
        this.output.tail(20)
      )
    }
    this.setState({ kind: 'ready', pid: child.pid ?? -1, since: Date.now() })
    this.log.info({ pid: child.pid, endpoint: this.endpoint }, 'rpc-server ready')
  }

  private onExit(child: Child, exitCode: number | undefined, signal: string | undefined): void {
    if (this.child !== child) return
    this.child = undefined
    if (!this.wanted || this.stateValue.kind !== 'ready') return // stopping, or a failed start that start() reports
    const ranMs = Date.now() - this.stateValue.since
    this.consecutiveCrashes = ranMs >= this.timings.stableAfterMs ? 0 : this.consecutiveCrashes
    this.log.warn({ exitCode, signal, lastOutput: this.output.tail(20) }, 'rpc-server exited unexpectedly')
    this.scheduleRestart(exitCode, signal)
  }

  private scheduleRestart(exitCode: number | undefined, signal: string | undefined): void {
    this.consecutiveCrashes++
    this.restarts++
    const delay = restartDelayMs(this.consecutiveCrashes, this.timings)
    this.setState({ kind: 'restarting', exitCode, signal, restartInMs: delay, restarts: this.restarts })
    this.restartTimer = setTimeout(() => {
      if (!this.wanted) return
      this.launch(this.consecutiveCrashes + 1).catch((err: Error) => {
        if (!this.wanted) return
        // Keep trying with a growing delay: the port may come free, the crash may be transient.
        this.log.error({ err: err.message }, 'rpc-server restart failed')
        this.scheduleRestart(err instanceof ProcessStartError ? err.childExitCode : undefined, undefined)
      })
    }, delay)
  }
}
