/**
 * One agent: its rpc-server (supervised, or an external one it attaches to), its place in the mesh,
 * and its local HTTP API. Wires the pieces; the rules live in @sollol/core.
 */
import type { Server } from 'node:http'
import { existsSync } from 'node:fs'
import {
  formatRpcVersion,
  probeRpcServer,
  RpcServerSupervisor,
  type LlamaBinaries,
  type Logger,
  type RpcDeviceMemory,
  type RpcServerState
} from '@sollol/llama-cpp'
import { LAN_MESH_TIMINGS, type Device, type MeshTimings, type ModelRef } from '@sollol/core'
import { lanAddresses, loadOrCreateIdentity, Mesh, type SelfDescription } from '@sollol/mesh'
import { defaultMemoryBudget, detectDevices, modelRef } from './capacity.js'
import { startHttpApi } from './http-api.js'
import { AGENT_VERSION } from './version.js'

export interface AgentOptions {
  readonly cluster: string
  readonly dataDir: string
  readonly p2pPort: number
  readonly apiHost: string
  readonly apiPort: number
  /** The address the rpc-server binds and is announced with; default: this host's first LAN address. */
  readonly rpcHost?: string
  readonly rpcPort: number
  readonly rpcThreads: number
  readonly rpcDevices?: readonly string[]
  readonly rpcCache: boolean
  /** Attach to an rpc-server the user runs instead of starting one. */
  readonly rpcEndpoint?: { host: string; port: number }
  readonly maxMemory?: number
  readonly model?: string
  readonly bootstrap: readonly string[]
  readonly mdns: boolean
  readonly binaries: LlamaBinaries
  readonly timings?: MeshTimings
  readonly logger: Logger
}

type RpcAnnounceState = SelfDescription['rpc']['state']

export class Agent {
  private rpc: RpcServerSupervisor | undefined
  private mesh: Mesh | undefined
  private http: Server | undefined
  private devices: Device[] = []
  private models: ModelRef[] = []
  private rpcProtocol: string | null = null
  private rpcState: RpcAnnounceState = 'starting'
  private externalProbe: NodeJS.Timeout | undefined
  readonly rpcHost: string

  constructor(private readonly o: AgentOptions) {
    const lan = lanAddresses()[0]?.address
    this.rpcHost = o.rpcEndpoint?.host ?? o.rpcHost ?? lan ?? '127.0.0.1'
    if (o.rpcEndpoint === undefined && o.rpcHost === undefined && lan === undefined) {
      o.logger.warn({}, 'no LAN address: the rpc-server listens on 127.0.0.1 and only this machine can use it')
    }
  }

  get peerId(): string | undefined {
    return this.mesh?.peerId
  }

  async start(): Promise<void> {
    const log = this.o.logger
    if (this.o.model !== undefined) {
      if (!existsSync(this.o.model)) throw new Error(`Expected --model to name a GGUF file, got \`${this.o.model}\` (no such file)`)
      this.models = [await modelRef(this.o.model)]
    }
    let rpcDevices: readonly RpcDeviceMemory[] = []
    if (this.o.rpcEndpoint !== undefined) {
      rpcDevices = await this.probeExternal()
      this.externalProbe = setInterval(() => {
        void this.probeExternal()
      }, 10_000)
    } else {
      const rpc = new RpcServerSupervisor({
        binary: this.o.binaries.rpcServer,
        host: this.rpcHost,
        port: this.o.rpcPort,
        threads: this.o.rpcThreads,
        cache: this.o.rpcCache,
        ...(this.o.rpcDevices !== undefined ? { devices: this.o.rpcDevices } : {}),
        logger: log
      })
      this.rpc = rpc
      rpc.on('state', (state) => {
        this.onRpcState(state)
      })
      await rpc.start()
      const probe = await probeRpcServer(this.rpcHost, this.o.rpcPort)
      this.rpcProtocol = formatRpcVersion(probe.version)
      rpcDevices = probe.devices
    }
    this.devices = await detectDevices(rpcDevices)

    const { key, created } = await loadOrCreateIdentity(this.o.dataDir)
    const mesh = new Mesh({
      cluster: this.o.cluster,
      privateKey: key,
      port: this.o.p2pPort,
      bootstrap: this.o.bootstrap,
      mdns: this.o.mdns,
      timings: this.o.timings ?? LAN_MESH_TIMINGS,
      logger: log,
      describeSelf: () => this.describeSelf()
    })
    this.mesh = mesh
    await mesh.start()
    log.info({ peerId: mesh.peerId, identity: created ? 'new' : 'kept', dataDir: this.o.dataDir }, 'agent identity')
    this.http = await startHttpApi({ host: this.o.apiHost, port: this.o.apiPort, view: () => mesh.view() })
    log.info(
      {
        api: `http://${this.o.apiHost}:${this.o.apiPort}/v1/cluster`,
        rpc: `${this.rpcHost}:${this.rpcPortInUse()}`,
        cluster: this.o.cluster
      },
      'agent running'
    )
  }

  async stop(): Promise<void> {
    clearInterval(this.externalProbe)
    await new Promise<void>((resolve) => {
      if (this.http === undefined) resolve()
      else this.http.close(() => resolve())
    })
    this.http = undefined
    await this.mesh?.stop()
    await this.rpc?.stop()
  }

  view() {
    return this.mesh?.view()
  }

  private rpcPortInUse(): number {
    return this.o.rpcEndpoint?.port ?? this.o.rpcPort
  }

  private describeSelf(): SelfDescription {
    return {
      agentVersion: AGENT_VERSION,
      rpc: {
        host: this.rpcHost,
        port: this.rpcPortInUse(),
        protocol: this.rpcProtocol,
        state: this.rpcState,
        llamaBuild: this.o.binaries.version
      },
      devices: this.devices,
      memoryBudget: this.o.maxMemory ?? defaultMemoryBudget(),
      cpuThreads: this.o.rpcThreads,
      models: this.models,
      canCoordinate: this.models.length > 0 && existsSync(this.o.binaries.llamaServer),
      apiPort: this.o.apiPort
    }
  }

  private onRpcState(state: RpcServerState): void {
    const next: RpcAnnounceState =
      state.kind === 'ready'
        ? 'ready'
        : state.kind === 'restarting'
          ? 'restarting'
          : state.kind === 'failed'
            ? 'failed'
            : state.kind === 'stopped'
              ? 'stopped'
              : 'starting'
    if (next === this.rpcState) return
    this.rpcState = next
    this.mesh?.announceNow()
  }

  /** An external rpc-server is probed now and then; a busy one times out harmlessly and keeps its last state. */
  private async probeExternal(): Promise<readonly RpcDeviceMemory[]> {
    const endpoint = this.o.rpcEndpoint
    if (endpoint === undefined) return []
    try {
      const probe = await probeRpcServer(endpoint.host, endpoint.port)
      this.rpcProtocol = formatRpcVersion(probe.version)
      this.setRpcState('external')
      return probe.devices
    } catch (err) {
      const kind = (err as { kind?: string }).kind
      if (kind !== 'timeout') this.setRpcState('unreachable')
      this.o.logger.debug({ err: (err as Error).message }, 'external rpc-server probe failed')
      return []
    }
  }

  private setRpcState(state: RpcAnnounceState): void {
    if (state === this.rpcState) return
    this.rpcState = state
    this.mesh?.announceNow()
  }
}
