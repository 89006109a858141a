/**
 * This machine's rpc-server: started and supervised (or an external one, attached to and probed now and
 * then), its devices listed, its speed measured once per build and kept, and what the announcement says
 * of it (state, protocol, devices with budgets, speed). Tells its owner when any of that changed.
 */
import { freemem } from 'node:os'
import { join } from 'node:path'
import { readFile, writeFile } from 'node:fs/promises'
import {
  backendAbort,
  calibrateRpcServer,
  CALIBRATION_METHOD,
  shapedCalibrationMethod,
  defaultCacheRoot,
  defaultServedDevices,
  formatRpcVersion,
  listRpcServerDevices,
  probeRpcServer,
  RpcServerSupervisor,
  type LlamaBinaries,
  type LocalDevice,
  type Logger,
  type RpcDeviceMemory,
  type RpcProbeResult,
  type RpcServerState
} from '@sollol/llama-cpp'
import type { Announcement, CalibrationShape, Device } from '@sollol/core'
import type { SelfDescription } from '@sollol/mesh'
import { announcedDevices, detectDevices, deviceBudgets } from './capacity.js'

/** Probes of a just-started server before its start is reported failed (each after it runs again, or 2 min). */
const FIRST_PROBE_ATTEMPTS = 5
const FIRST_PROBE_READY_WAIT_MS = 120_000

export type RpcAnnounceState = SelfDescription['rpc']['state']
export type Speed = NonNullable<Announcement['speed']>
export type BackendAbortView = NonNullable<Announcement['rpc']['abort']>

export interface LocalRpcOptions {
  readonly binaries: LlamaBinaries
  /** Where the supervised server listens: loopback behind the gate or tunnel, the LAN address when open. */
  readonly bind: string
  readonly port: number
  readonly threads: number
  /** `--rpc-device`: the devices it serves (default: every accelerator, then the CPU). */
  readonly devices?: readonly string[]
  /** The tensor cache (`-c`), kept under `$LLAMA_CACHE`. */
  readonly cache: boolean
  readonly llamaCacheRoot: string
  /** Attach to an rpc-server the user runs instead of starting one. */
  readonly external?: { host: string; port: number }
  /** The measured speed is kept here (`calibration.json`). */
  readonly dataDir: string
  /** The node's memory budget (`--max-memory`, or 75 % of what was free at start). */
  readonly memoryBudget: number
  readonly maxDeviceMemory?: Readonly<Record<string, number>>
  /** `--rpc-speed`: announced instead of a measurement. */
  readonly givenSpeed?: number
  readonly recalibrate: boolean
  readonly logger: Logger
  readonly frozenCheckMs?: number
  readonly externalProbeMs?: number
  /** Something the announcement says of the rpc-server changed. */
  readonly onChange: () => void
}

/**
 * Measures an rpc-server's speed (ours, or a bare one an agent speaks for) with llama-server on this
 * machine; `tensorSplit` puts the whole calibration model on one of its devices.
 */
export async function calibrateSpeed(
  binaries: LlamaBinaries,
  endpoint: string,
  logger: Logger,
  tensorSplit?: number[],
  shape?: CalibrationShape
): Promise<Speed> {
  const result = await calibrateRpcServer({
    llamaServer: binaries.llamaServer,
    endpoint,
    cacheDir: join(defaultCacheRoot(), 'calibration'),
    ...(tensorSplit !== undefined ? { tensorSplit } : {}),
    ...(shape !== undefined ? { shape } : {}),
    logger
  })
  return {
    secondsPerGiB: result.secondsPerGiB,
    fixedSecondsPerToken: result.fixedSecondsPerToken,
    ...(result.promptSecondsPerGiB !== undefined ? { promptSecondsPerGiB: result.promptSecondsPerGiB } : {}),
    measuredAt: result.measuredAt,
    method: result.method
  }
}

/** This node's speed measured in the shape of the cluster's model, as announced (`modelSpeed`). */
export type ModelSpeed = NonNullable<Announcement['modelSpeed']>

/** How long a device's measurement waits for an rpc-server that a measurement before it crashed. */
const READY_AFTER_CRASH_MS = 30_000

export class LocalRpc {
  /** The supervised process (undefined for an external server). */
  private supervisor: RpcServerSupervisor | undefined
  /** The devices the server serves, in its order (empty: not listed; an external or old rpc-server). */
  private served: LocalDevice[] = []
  private announcedDevices: Device[] = []
  private measuredSpeed: Speed | null = null
  private shapedSpeed: ModelSpeed | null = null
  /** A measurement in a model's shape is under way (the server has a calibration client). */
  private shapedBusy = false
  private rpcProtocol: string | null = null
  private rpcState: RpcAnnounceState = 'starting'
  private lastAbort: BackendAbortView | null = null
  /** False until the server is started and measured: it is announced as `starting` until then. */
  private measured = false
  private stopped = false
  private frozenCheck: NodeJS.Timeout | undefined
  private externalProbe: NodeJS.Timeout | undefined

  constructor(private readonly o: LocalRpcOptions) {}

  /** Whether this agent runs the server (and so can restart it: an external one serves every term). */
  get supervised(): boolean {
    return this.supervisor !== undefined
  }

  get port(): number {
    return this.o.external?.port ?? this.o.port
  }

  get state(): RpcAnnounceState {
    return this.measured ? this.rpcState : 'starting'
  }

  get protocol(): string | null {
    return this.rpcProtocol
  }

  get devices(): Device[] {
    return this.announcedDevices
  }

  get speed(): Speed | null {
    return this.measuredSpeed
  }

  get modelSpeed(): ModelSpeed | null {
    return this.shapedSpeed
  }

  /** Whether the server has been measured (the generic models) and no other measurement is under way. */
  get canMeasureAgain(): boolean {
    return this.measured && !this.shapedBusy && !this.stopped && (this.supervisor !== undefined || this.o.givenSpeed !== undefined)
  }

  /**
   * Measures the server again in the shape of the cluster's model (calibration-shape.ts), or takes the
   * measurement kept from an earlier start; announced as `modelSpeed` when done. The caller makes sure no
   * plan's llama-server uses the server meanwhile (one client at a time: a load would wait for it).
   */
  async measureInShape(shape: CalibrationShape): Promise<boolean> {
    if (!this.canMeasureAgain) return false
    if (this.o.givenSpeed !== undefined && this.measuredSpeed !== null) {
      // --rpc-speed steers the planner whatever the model: it stands for the model's shape too
      this.shapedSpeed = { shape: shape.key, speed: this.measuredSpeed, devices: this.served.map(() => this.measuredSpeed) }
      this.o.onChange()
      return true
    }
    this.shapedBusy = true
    try {
      const speeds = await this.measureSpeeds(shape)
      if (this.stopped || speeds.node === null) return false
      this.shapedSpeed = { shape: shape.key, speed: speeds.node, devices: speeds.devices }
      if (speeds.measured && this.served.some((d) => d.backend !== 'cpu') && this.supervisor !== undefined) {
        // the lavapipe abort after a calibration client (see start): a fresh process before a plan uses it
        this.o.logger.info({}, "restarting the rpc-server after measuring its devices in the model's shape")
        await this.supervisor.stop()
        await this.supervisor.start().catch((err: Error) => {
          this.o.logger.error({ err: err.message }, 'the rpc-server did not start again after measuring its devices')
        })
      }
      this.o.onChange()
      return true
    } finally {
      this.shapedBusy = false
    }
  }

  /** The last abort of a compute backend of the rpc-server (announced as `rpc.abort`); null: none. */
  get abort(): BackendAbortView | null {
    return this.lastAbort
  }

  get restartCount(): number {
    return this.supervisor?.restartCount ?? 0
  }

  /** Starts the supervised server (a port clash or a bad binary throws); an external one is probed later. */
  async launch(): Promise<void> {
    if (this.o.external !== undefined) return
    const devices = await this.chooseDevices()
    const rpc = new RpcServerSupervisor({
      binary: this.o.binaries.rpcServer,
      host: this.o.bind,
      port: this.o.port,
      threads: this.o.threads,
      cache: this.o.cache,
      env: { LLAMA_CACHE: this.o.llamaCacheRoot },
      ...(devices !== undefined ? { devices } : {}),
      logger: this.o.logger
    })
    this.supervisor = rpc
    // A frozen rpc-server still accepts connections (the kernel does) but never answers: say so, so
    // that no plan uses it, and take it back when it thaws.
    this.frozenCheck = setInterval(() => {
      const frozen = rpc.isFrozen()
      if (frozen && this.rpcState === 'ready') this.setState('frozen')
      else if (!frozen && this.rpcState === 'frozen' && rpc.state.kind === 'ready') this.setState('ready')
    }, this.o.frozenCheckMs ?? 1000)
    rpc.on('state', (state) => {
      // A compute backend's abort (a graph the device cannot run) is read from the output of the run that
      // ended, and announced: the coordinator leaves that device out for its model.
      if (state.kind === 'restarting') {
        const abort = backendAbort(rpc.lastRunOutput())
        if (abort !== undefined) {
          this.lastAbort = { at: new Date().toISOString(), kind: abort.kind, line: abort.line }
          this.o.logger.warn(
            { backend: abort.kind, line: abort.line },
            'the rpc-server aborted in a compute backend (a graph it cannot run)'
          )
          this.o.onChange()
        }
      }
      this.setState(announceState(state))
    })
    await rpc.start()
  }

  /**
   * Reads the server's devices and measures its speed (or attaches to an external one); then says so.
   * Resolves when the server is announced as measured (or the component was stopped meanwhile).
   */
  async measure(): Promise<void> {
    let rpcDevices: readonly RpcDeviceMemory[] = []
    if (this.o.external !== undefined) {
      rpcDevices = await this.probeExternal()
      this.externalProbe = setInterval(() => {
        void this.probeExternal()
      }, this.o.externalProbeMs ?? 10_000)
    } else {
      const probe = await this.probeSupervised()
      if (probe === undefined) return // stopped meanwhile
      this.rpcProtocol = formatRpcVersion(probe.version)
      rpcDevices = probe.devices
      if (this.served.length !== probe.devices.length) this.served = [] // not what was listed: plan it as one device
      // Measured now, while nobody uses it: it is announced as `starting` until this is done.
      const speeds = await this.measureSpeeds()
      if (this.stopped) return
      this.measuredSpeed = speeds.node
      if (speeds.measured && this.served.some((d) => d.backend !== 'cpu') && this.supervisor !== undefined) {
        // Measured with lavapipe (Mesa's software Vulkan): ggml-vulkan in this llama.cpp release aborts the
        // rpc-server ("corrupted double-linked list") in about half of the loads by a later client with
        // other tensors on the device. The calibration clients were such loads: serve from a fresh process.
        this.o.logger.info({}, 'restarting the rpc-server after measuring its devices (a fresh process for the first plan)')
        await this.supervisor.stop()
        await this.supervisor.start().catch((err: Error) => {
          this.o.logger.error({ err: err.message }, 'the rpc-server did not start again after measuring its devices')
        })
      }
      if (this.served.length > 0) {
        const budgets = deviceBudgets(
          this.served.map((d, i) => ({ ...d, memoryFree: probe.devices[i]?.free ?? d.memoryFree })),
          this.o.memoryBudget,
          this.o.maxDeviceMemory
        )
        this.announcedDevices = announcedDevices(this.served, probe.devices, budgets, freemem()).map((d, i) => ({
          ...d,
          speed: speeds.devices[i] ?? null
        }))
      }
    }
    if (this.served.length === 0) this.announcedDevices = await detectDevices(rpcDevices)
    if (this.stopped) return
    this.measured = true
    this.o.onChange()
  }

  /**
   * The supervised server's protocol and devices. A server that exits just after it accepted its readiness
   * check is restarted by its supervisor: the probe waits for that instead of failing the agent's start
   * (seen once in ~120 starts of 20 agents on 2 cores: exit code 0 a quarter second after `ready`, the
   * probe refused, and the agent exited, so a test's cluster of four never had four).
   */
  private async probeSupervised(): Promise<RpcProbeResult | undefined> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await probeRpcServer(this.o.bind, this.o.port)
      } catch (err) {
        const supervisor = this.supervisor
        if (this.stopped || supervisor === undefined) return undefined
        if (attempt >= FIRST_PROBE_ATTEMPTS) throw err
        this.o.logger.warn(
          { err: (err as Error).message, attempt },
          'the rpc-server did not answer its first probe: asking again once it runs'
        )
        if (!(await supervisor.whenReady(FIRST_PROBE_READY_WAIT_MS))) throw err
      }
    }
  }

  /** Restarts the supervised server (a fence where it is open to the LAN); an external one is left alone. */
  async restart(): Promise<void> {
    if (this.supervisor === undefined) return
    await this.supervisor.stop()
    await this.supervisor.start()
  }

  async stop(): Promise<void> {
    this.stopped = true
    clearInterval(this.frozenCheck)
    clearInterval(this.externalProbe)
    await this.supervisor?.stop()
  }

  /**
   * Which devices the server serves: `--rpc-device`, else every accelerator and then the CPU (the
   * rpc-server alone would leave the CPU out on a GPU box). Undefined: the server's default (a CPU).
   */
  private async chooseDevices(): Promise<string[] | undefined> {
    const local =
      this.o.binaries.devices ??
      (await listRpcServerDevices(this.o.binaries.rpcServer).catch((err: Error) => {
        this.o.logger.warn({ err: err.message }, 'could not list the devices of the rpc-server binary')
        return []
      }))
    const chosen = this.o.devices !== undefined ? [...this.o.devices] : defaultServedDevices(local)
    const names = chosen ?? local.filter((d) => d.backend === 'cpu').map((d) => d.name)
    this.served = names.flatMap((name) => local.filter((d) => d.name === name))
    if (this.served.length !== names.length) this.served = [] // a name it did not list: the server will say why
    if (local.length > 0)
      this.o.logger.info({ devices: local.map((d) => `${d.name} (${d.description})`), serves: names }, 'rpc-server devices')
    return chosen
  }

  /**
   * Seconds per GiB of layers, measured once per llama.cpp build, thread count and devices, then cached:
   * the server as a whole (its first device, as llama.cpp fills it) and, when it serves several devices,
   * each device alone (the whole calibration model on it), so the planner can price each.
   */
  private async measureSpeeds(shape?: CalibrationShape): Promise<{ node: Speed | null; devices: Array<Speed | null>; measured: boolean }> {
    const log = this.o.logger
    if (this.o.givenSpeed !== undefined && shape === undefined) {
      log.info({ secondsPerGiB: this.o.givenSpeed }, 'rpc-server speed given by --rpc-speed (not measured)')
      const given = { secondsPerGiB: this.o.givenSpeed, measuredAt: new Date().toISOString(), method: 'given by --rpc-speed' }
      return { node: given, devices: this.served.map(() => given), measured: false }
    }
    // one file per shape: a cluster that changes models keeps the measurements of the last ones
    const file = join(this.o.dataDir, shape === undefined ? 'calibration.json' : `calibration-${shape.key}.json`)
    const served = this.served.map((d) => d.name)
    const key = JSON.stringify({
      build: this.o.binaries.version,
      threads: this.o.threads,
      devices: served.length > 0 ? served : (this.o.devices ?? null),
      method: shape === undefined ? CALIBRATION_METHOD : shapedCalibrationMethod(shape)
    })
    type Speeds = { node: Speed | null; devices: Array<Speed | null>; measured: boolean }
    if (!this.o.recalibrate) {
      try {
        const cached = JSON.parse(await readFile(file, 'utf8')) as { key: string; speed: Speed; devices?: Array<Speed | null> }
        if (cached.key === key) return { node: cached.speed, devices: cached.devices ?? [], measured: false }
      } catch {}
    }
    const endpoint = `${this.o.bind}:${this.o.port}`
    const measure = async (tensorSplit: number[] | undefined, what: string): Promise<Speed | null> => {
      // a device that aborted the server while measured (a graph its backend cannot run) leaves it
      // restarting: the next device waits for it instead of failing to connect
      if (this.supervisor !== undefined && !(await this.supervisor.whenReady(READY_AFTER_CRASH_MS))) {
        log.warn({ what }, 'the rpc-server is not running: its speed is not measured; the planner will assume it is slow')
        return null
      }
      try {
        const started = Date.now()
        const speed = await calibrateSpeed(this.o.binaries, endpoint, log, tensorSplit, shape)
        log.info(
          {
            what,
            ...(shape !== undefined ? { shape: shape.key } : {}),
            secondsPerGiB: Number(speed.secondsPerGiB.toFixed(4)),
            fixedMsPerToken: Number(((speed.fixedSecondsPerToken ?? 0) * 1000).toFixed(3)),
            ...(speed.promptSecondsPerGiB !== undefined ? { promptSecondsPerGiB: Number(speed.promptSecondsPerGiB.toFixed(4)) } : {}),
            ms: Date.now() - started
          },
          shape !== undefined ? "rpc-server speed measured in the model's shape" : 'rpc-server speed measured'
        )
        return speed
      } catch (err) {
        // a stop kills the calibration's llama-server ("fetch failed"): not a slow server, and nothing is kept
        if (this.stopped)
          log.info({ what }, 'measuring the rpc-server speed was cut short by the stop; it is measured again at the next start')
        else log.warn({ what, err: (err as Error).message }, 'could not measure the rpc-server speed; the planner will assume it is slow')
        return null
      }
    }
    const result: Speeds = { node: null, devices: [], measured: true }
    if (served.length > 1) {
      for (const [i, name] of served.entries()) {
        result.devices.push(
          await measure(
            served.map((_, j) => (j === i ? 1 : 0)),
            name
          )
        )
      }
      const measured = result.devices.filter((s): s is Speed => s !== null)
      // older coordinators plan the node as one device: its fastest
      result.node = measured.sort((a, b) => a.secondsPerGiB - b.secondsPerGiB)[0] ?? null
    } else {
      result.node = await measure(undefined, 'rpc-server')
      result.devices = served.map(() => result.node)
    }
    if (result.node !== null) {
      await writeFile(file, JSON.stringify({ key, speed: result.node, devices: result.devices }, null, 2) + '\n').catch((err: Error) => {
        log.warn({ file, err: err.message }, 'could not keep the measured speed; it will be measured again at the next start')
      })
    }
    return result
  }

  /** An external rpc-server is probed now and then; a busy one times out harmlessly and keeps its last state. */
  private async probeExternal(): Promise<readonly RpcDeviceMemory[]> {
    const endpoint = this.o.external
    if (endpoint === undefined) return []
    try {
      const probe = await probeRpcServer(endpoint.host, endpoint.port)
      this.rpcProtocol = formatRpcVersion(probe.version)
      this.setState('external')
      return probe.devices
    } catch (err) {
      const kind = (err as { kind?: string }).kind
      if (kind !== 'timeout') this.setState('unreachable')
      this.o.logger.debug({ err: (err as Error).message }, 'external rpc-server probe failed')
      return []
    }
  }

  private setState(state: RpcAnnounceState): void {
    if (state === this.rpcState) return
    this.rpcState = state
    this.o.onChange()
  }
}

/** The supervisor's state as announced. */
function announceState(state: RpcServerState): RpcAnnounceState {
  switch (state.kind) {
    case 'ready':
    case 'restarting':
    case 'failed':
    case 'stopped':
      return state.kind
    default:
      return 'starting'
  }
}
