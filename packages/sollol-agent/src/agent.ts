/**
 * One agent: wires its rpc-server (local-rpc.ts: supervised or external, measured once), the gate or
 * tunnel in front of it, the tensor cache (tensor-cache-keeper.ts), the bare rpc-servers it speaks for
 * (static-backend-probe.ts), its place in the mesh, the coordination loop, the OpenAI upstream
 * (openai-upstream.ts) and the local HTTP API. The rules live in @sollol/core.
 */
import type { Server } from 'node:http'
import { existsSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { LAN_TIMINGS, rpcCacheDir, touchCacheFile, type LlamaBinaries, type Logger } from '@sollol/llama-cpp'
import { readModelInfo } from '@sollol/gguf'
import {
  calibrationShapeOf,
  clusterEvents,
  clusterModel,
  clusterViewOf,
  modelShapeOf,
  EventLog,
  LAN_ELECTION_TIMINGS,
  LAN_MESH_TIMINGS,
  NO_COORDINATION,
  type ClusterView,
  type ElectionTimings,
  type MeshTimings,
  type ModelRef,
  type KvCacheTypes
} from '@sollol/core'
import { lanAddresses, loadOrCreateIdentity, Mesh, nextPersistedIncarnation, type MeshTransport, type SelfDescription } from '@sollol/mesh'
import { defaultMemoryBudget, lastLevelCacheBytes, modelRef } from './capacity.js'
import { Coordination, LAN_COORDINATION_TIMINGS, type CoordinationTimings } from './coordinator.js'
import { startHttpApi } from './http-api.js'
import { calibrateSpeed, LocalRpc } from './local-rpc.js'
import { AgentMetrics } from './metrics.js'
import { OpenAiUpstream } from './openai-upstream.js'
import { RpcGate } from './rpc-gate.js'
import { RelayLoads } from './relay-loads.js'
import { resolveModelSpec } from './model-store.js'
import { StaticBackendProbe } from './static-backend-probe.js'
import { TensorCacheKeeper } from './tensor-cache-keeper.js'
import { AGENT_VERSION } from './version.js'

export const RPC_ACCESS_MODES = ['gated', 'tunnel', 'open'] as const
export type RpcAccessMode = (typeof RPC_ACCESS_MODES)[number]

export interface AgentOptions {
  readonly cluster: string
  readonly dataDir: string
  readonly p2pPort: number
  /** Where the mesh listens (default all addresses); on loopback the agents of one machine find each other. */
  readonly p2pHost?: string
  readonly apiHost: string
  readonly apiPort: number
  /** The address the rpc-server binds and is announced with; default: this host's first LAN address. */
  readonly rpcHost?: string
  /**
   * Who may use the rpc-server: `gated` (default; a gate admits the current coordinator's address only),
   * `tunnel` (only through the mesh: encrypted, slower), `open` (anyone on the LAN; trusted networks only).
   */
  readonly rpcAccess: RpcAccessMode
  readonly rpcPort: number
  readonly rpcThreads: number
  readonly rpcDevices?: readonly string[]
  readonly rpcCache: boolean
  /** Cap of the rpc-server's tensor cache (default: see defaultCacheCap). */
  readonly rpcCacheMax?: number
  /**
   * Bare rpc-servers (no agent) this agent speaks for (`--rpc-backend`, `--rpc-backends-file`): probed,
   * measured and announced, so the coordinator plans with them.
   */
  readonly rpcBackends?: ReadonlyArray<{ host: string; port: number }>
  /** Attach to an rpc-server the user runs instead of starting one. */
  readonly rpcEndpoint?: { host: string; port: number }
  readonly maxMemory?: number
  /** `--max-memory NAME=SIZE` for devices other than the CPU (`CUDA0`, `Vulkan0`). */
  readonly maxDeviceMemory?: Readonly<Record<string, number>>
  /** A GGUF path, or `ollama:NAME[:TAG]` (then announced by that name). */
  readonly model?: string
  readonly serverPort: number
  readonly apiToken?: string
  readonly contextSize?: number
  /** KV cache types llama-server runs with when this agent coordinates (`--cache-type-k/v`). */
  readonly cacheTypes?: KvCacheTypes
  readonly recalibrate: boolean
  /** Seconds per GiB given by the user (`--rpc-speed`): announced instead of a measurement. */
  readonly rpcSpeed?: number
  readonly bootstrap: readonly string[]
  readonly mdns: boolean
  readonly clusterKey?: Uint8Array
  readonly binaries: LlamaBinaries
  /** Default `tcp` (the LAN); `memory` runs whole agents in one process (tests: agent-in-process.test.ts). */
  readonly p2pTransport?: MeshTransport
  /** Timings: LAN presets unless given (tests pass their fast presets). */
  readonly timings?: MeshTimings
  readonly electionTimings?: ElectionTimings
  readonly coordinationTimings?: CoordinationTimings
  readonly logger: Logger
}

const isLoopback = (host: string): boolean => host.startsWith('127.')

const monotonic = (): number => performance.timeOrigin + performance.now()

/** Measurements in a model's shape cut short are tried this many times in all. */
const SHAPE_TRIES = 3

export class Agent {
  private mesh: Mesh | undefined
  private coordination: Coordination | undefined
  private http: Server | undefined
  private models: ModelRef[] = []
  private readonly rpc: LocalRpc
  private rpcMeasuring: Promise<void> | undefined
  /** Recent cluster events (joins, leaves, elections, re-plans) for the dashboard, told by comparing views. */
  private readonly events = new EventLog()
  private lastView: ClusterView | null = null
  private upstream: OpenAiUpstream | undefined
  /** The model file in use (undefined when none was given or it was unusable). */
  private modelPath: string | undefined
  /** Why this agent is less than it was asked to be (a bad model file), shown in status. */
  private problem: string | null = null
  /** The address announced for the rpc-server (this host's LAN address). */
  readonly rpcHost: string
  /**
   * Fixed at start (--max-memory, or 75 % of what is free then): re-reading free memory on every
   * announcement would move the offer as processes come and go, and every move can change the plan.
   */
  private readonly memoryBudget: number
  /** This machine's last-level CPU cache: the shaped calibration outgrows it. */
  private readonly cacheBytes = lastLevelCacheBytes()
  private readonly rpcAccess: 'gated' | 'tunnel' | 'direct'
  private gate: RpcGate | undefined
  /** The rpc-server's tensor cache (`rpc/` below its `$LLAMA_CACHE`, one per agent). */
  private readonly tensorCache: string
  private readonly relayLoads: RelayLoads
  private cache: TensorCacheKeeper | undefined
  private readonly staticBackends: StaticBackendProbe
  /** Set by stop(): work still in flight from start (measuring the rpc-server) must not start anything new. */
  private stopping = false

  constructor(private readonly o: AgentOptions) {
    const lan = lanAddresses()[0]?.address
    this.rpcHost = o.rpcEndpoint?.host ?? o.rpcHost ?? lan ?? '127.0.0.1'
    this.memoryBudget = o.maxMemory ?? defaultMemoryBudget()
    // On loopback a gate would protect nothing (only this machine reaches it) and would take the rpc-server's
    // own address and port: the rpc-server is then reached directly.
    const loopbackGate = o.rpcAccess === 'gated' && isLoopback(this.rpcHost)
    this.rpcAccess = o.rpcEndpoint !== undefined || o.rpcAccess === 'open' || loopbackGate ? 'direct' : o.rpcAccess
    // `$LLAMA_CACHE` of the rpc-server
    const llamaCacheRoot = join(o.dataDir, 'llama-cache')
    this.tensorCache = rpcCacheDir(llamaCacheRoot)
    const announce = (): void => this.mesh?.announceNow()
    this.rpc = new LocalRpc({
      binaries: o.binaries,
      // loopback behind the gate or the tunnel, the LAN address when open
      bind: this.rpcAccess === 'direct' ? this.rpcHost : '127.0.0.1',
      port: o.rpcPort,
      threads: o.rpcThreads,
      ...(o.rpcDevices !== undefined ? { devices: o.rpcDevices } : {}),
      cache: o.rpcCache,
      llamaCacheRoot,
      ...(o.rpcEndpoint !== undefined ? { external: o.rpcEndpoint } : {}),
      dataDir: o.dataDir,
      memoryBudget: this.memoryBudget,
      ...(o.maxDeviceMemory !== undefined ? { maxDeviceMemory: o.maxDeviceMemory } : {}),
      ...(o.rpcSpeed !== undefined ? { givenSpeed: o.rpcSpeed } : {}),
      recalibrate: o.recalibrate,
      logger: o.logger,
      onChange: announce
    })
    this.staticBackends = new StaticBackendProbe({
      backends: o.rpcBackends ?? [],
      calibrate: async (endpoint) => await calibrateSpeed(o.binaries, endpoint, o.logger),
      logger: o.logger,
      onChange: announce
    })
    this.relayLoads = new RelayLoads(
      (hash) => void touchCacheFile(this.tensorCache, hash),
      // the server has written what it was sent to its cache by now: say so, with the load's numbers
      () => void (this.cache !== undefined ? this.cache.refresh() : announce())
    )
    if (o.rpcAccess === 'open' && o.rpcEndpoint === undefined && !isLoopback(this.rpcHost)) {
      o.logger.warn(
        { rpc: `${this.rpcHost}:${o.rpcPort}` },
        '--rpc-access open: the rpc-server accepts anyone on the LAN (llama.cpp: "never run the RPC server on an open network"); use it on trusted networks only'
      )
    }
    if (o.rpcEndpoint === undefined && o.rpcHost === undefined && lan === undefined) {
      o.logger.warn({}, 'no LAN address: the rpc-server listens on 127.0.0.1 and only this machine can use it')
    }
  }

  get peerId(): string | undefined {
    return this.mesh?.peerId
  }

  async start(): Promise<void> {
    const log = this.o.logger
    // Before anything is cached in it (the speed measurement comes before the identity is created).
    await mkdir(this.o.dataDir, { recursive: true, mode: 0o700 })
    if (this.o.model !== undefined) {
      // A bad model file does not stop the agent: it serves as a worker and says why in its log and status.
      try {
        // a path, or ollama:NAME[:TAG] (a name or tag not in the store is a problem like a missing file)
        const path = await resolveModelSpec(this.o.model)
        if (!existsSync(path)) throw new Error(`Expected --model to name a GGUF file, got \`${this.o.model}\` (no such file)`)
        const info = await readModelInfo(path)
        // its shape: what every agent calibrates with to price this model (calibration-shape.ts)
        this.models = [
          { ...(await modelRef(path, this.o.model.startsWith('ollama:') ? this.o.model : undefined)), shape: modelShapeOf(info) }
        ]
        this.modelPath = path
      } catch (err) {
        this.problem = `${(err as Error).message}; serving as a worker only`
        log.error({ model: this.o.model }, this.problem)
      }
    }
    // The rpc-server is started first (a port clash or a bad binary stops the agent before anything else
    // binds); it is probed and measured (the first time: seconds) while the mesh starts, so joining takes
    // no longer than the slower of the two. Until it is measured, the announcement says `starting`.
    await this.rpc.launch()
    this.rpcMeasuring = this.rpc.measure().then(() => this.afterMeasured())
    this.rpcMeasuring.catch(() => {}) // awaited below; a failure there stops the agent
    const { key, created } = await loadOrCreateIdentity(this.o.dataDir)
    const mesh = new Mesh({
      cluster: this.o.cluster,
      privateKey: key,
      incarnation: await nextPersistedIncarnation(this.o.dataDir),
      ...(this.o.p2pTransport !== undefined ? { transport: this.o.p2pTransport } : {}),
      port: this.o.p2pPort,
      ...(this.o.p2pHost !== undefined ? { listenHost: this.o.p2pHost, announceLoopback: isLoopback(this.o.p2pHost) } : {}),
      bootstrap: this.o.bootstrap,
      mdns: this.o.mdns,
      ...(this.o.clusterKey !== undefined ? { clusterKey: this.o.clusterKey } : {}),
      timings: this.o.timings ?? LAN_MESH_TIMINGS,
      logger: log,
      describeSelf: () => this.describeSelf(),
      state: () => new TextEncoder().encode(JSON.stringify(this.view())),
      now: monotonic
    })
    this.mesh = mesh
    this.coordination = new Coordination({
      mesh,
      binaries: this.o.binaries,
      modelPath: this.modelPath,
      serverHost: this.rpcHost,
      // the LAN may use llama-server directly (the plan's URL); a loopback-only agent (the demo) keeps it there
      serverBind: isLoopback(this.rpcHost) ? this.rpcHost : '0.0.0.0',
      serverPort: this.o.serverPort,
      apiToken: this.o.apiToken,
      contextSize: this.o.contextSize,
      ...(this.o.cacheTypes !== undefined ? { cacheTypes: this.o.cacheTypes } : {}),
      threads: this.o.rpcThreads,
      electionTimings: this.o.electionTimings ?? LAN_ELECTION_TIMINGS,
      timings: this.o.coordinationTimings ?? LAN_COORDINATION_TIMINGS,
      // Loading a big model over the LAN takes minutes; a 1-token liveness check should take milliseconds
      // (it gets a slot of its own), so 6 s without an answer means a frozen or lost rpc-server.
      supervisorTimings: { ...LAN_TIMINGS, readyTimeoutMs: 10 * 60_000, livenessTimeoutMs: 6000 },
      fence: async (term, coordinator) => {
        await this.fence(term, coordinator)
      },
      // no longer a model holder: not electable, and status says why
      onModelUnloadable: (reason) => {
        this.problem = reason
        this.models = []
        this.mesh?.announceNow()
      },
      logger: log.child({ component: 'coordination' }),
      now: monotonic
    })
    await mesh.start()
    const coordination = this.coordination
    if (this.rpcAccess === 'tunnel') {
      // Only the coordinator of the current term gets through to the loopback rpc-server.
      await mesh.serveTunnel(
        'rpc',
        { host: '127.0.0.1', port: this.o.rpcPort },
        (peer) => peer === coordination.election.coordinator,
        () => this.relayLoads.connection()
      )
    } else if (this.rpcAccess === 'gated' && this.rpc.supervised) {
      this.gate = new RpcGate({
        host: this.rpcHost,
        port: this.o.rpcPort,
        targetPort: this.o.rpcPort,
        admitted: () => {
          const coordinator = coordination.election.coordinator
          return new Set(coordinator === undefined || coordinator === mesh.peerId ? [] : mesh.peerAddresses(coordinator))
        },
        onRefused: (address) => this.o.logger.warn({ from: address }, 'rpc gate: refused a connection (not the coordinator)'),
        tap: () => this.relayLoads.connection()
      })
      await this.gate.start()
    }
    // Any member may reach the OpenAI API of this agent's llama-server (when it coordinates) through the mesh.
    await mesh.serveTunnel('openai', { host: '127.0.0.1', port: this.o.serverPort }, () => true)
    this.upstream = new OpenAiUpstream({ mesh, coordination: () => coordination.view(), serverPort: this.o.serverPort })
    const upstream = this.upstream
    coordination.start()
    // about once a second, on the mesh's clock (no wake-up of its own)
    let ticks = 0
    mesh.on('tick', () => {
      if (++ticks % 4 !== 0 || this.stopping) return
      this.recordEvents(this.view())
      this.measureInModelShape(mesh)
    })
    log.info({ peerId: mesh.peerId, identity: created ? 'new' : 'kept', dataDir: this.o.dataDir }, 'agent identity')
    this.http = await startHttpApi({
      host: this.o.apiHost,
      port: this.o.apiPort,
      view: () => this.view(),
      events: (after) => this.events.since(after),
      plan: async () => await coordination.dryRun(),
      upstream: async () => await upstream.resolve(),
      metrics: new AgentMetrics({
        view: () => this.view(),
        rpcRestarts: () => this.rpc.restartCount,
        relayed: () => ({
          totalBytes: this.relayLoads.weightBytesTotal,
          lastLoadBytes: this.relayLoads.current?.weightBytes ?? null,
          cacheBytes: this.cache?.view?.bytes ?? null
        }),
        llama: () => ({
          serving: coordination.serving,
          causes: coordination.stats.causes,
          metricsUrl: coordination.llamaMetricsUrl,
          token: this.o.apiToken
        })
      })
    })
    await this.rpcMeasuring
    log.info(
      {
        api: `http://${this.o.apiHost}:${this.o.apiPort}/v1/cluster`,
        rpc: `${this.rpcHost}:${this.rpc.port}`,
        cluster: this.o.cluster
      },
      'agent running'
    )
  }

  /** Once the rpc-server is measured (it is announced now): its tensor cache, and the bare servers. */
  private afterMeasured(): void {
    if (this.stopping) return
    if (this.rpc.supervised && this.o.rpcCache) {
      this.cache = new TensorCacheKeeper({
        dir: this.tensorCache,
        dataDir: this.o.dataDir,
        ...(this.o.rpcCacheMax !== undefined ? { maxBytes: this.o.rpcCacheMax } : {}),
        ...(this.modelPath !== undefined ? { modelPath: this.modelPath } : {}),
        modelId: this.models[0]?.id ?? 'model',
        logger: this.o.logger,
        onChange: () => this.mesh?.announceNow()
      })
      void this.cache.start()
    }
    // beside the rest (a first measurement takes seconds; fencing must not wait for it)
    this.staticBackends.start()
  }

  async stop(): Promise<void> {
    this.stopping = true
    this.staticBackends.stop()
    this.cache?.stop()
    await new Promise<void>((resolve) => {
      if (this.http === undefined) resolve()
      else this.http.close(() => resolve())
    })
    this.http = undefined
    await this.coordination?.stop()
    await this.upstream?.close()
    await this.gate?.stop()
    await this.mesh?.stop()
    await this.rpc.stop()
  }

  private recordEvents(view: ClusterView): void {
    const events = clusterEvents(this.lastView, view)
    this.lastView = view
    if (events.length === 0) return
    this.events.add(events, view.generatedAt)
    for (const e of events) this.o.logger.info({ event: e.kind, peer: e.peerId ?? undefined }, e.message)
  }

  /**
   * Fences the supervised rpc-server for a new (term, coordinator): whatever llama-server of another
   * coordinator used it is cut off. Behind the gate or the tunnel it listens on loopback, so cutting their
   * connections (and the coordination loop having stopped our own llama-server first) is the whole fence:
   * the rpc-server, its loaded state and its tensor cache stay. Open to the LAN, it is restarted.
   */
  private async fence(term: number, coordinator: string | undefined): Promise<void> {
    await this.rpcMeasuring?.catch(() => {})
    if (!this.rpc.supervised) return // an external rpc-server cannot be fenced by us (documented)
    const cut = (this.mesh?.cutTunnels((peer) => peer === coordinator) ?? 0) + (this.gate?.cut() ?? 0)
    if (this.rpcAccess !== 'direct') {
      this.o.logger.info({ term, coordinator, cut }, 'fenced: connections not from the coordinator cut (rpc-server kept)')
      return
    }
    this.o.logger.info({ term }, 'fencing: restarting the rpc-server for the new term (it is open to the LAN)')
    await this.rpc.restart()
  }

  /**
   * The cluster view this agent serves (HTTP API, status, dashboard, metrics, the mesh's state protocol):
   * the mesh's facts and the coordination's part, put together in one place (clusterViewOf).
   */
  view(): ClusterView {
    const mesh = this.mesh
    if (mesh === undefined) throw new Error('agent not started')
    const part = this.coordination?.view() ?? NO_COORDINATION
    return clusterViewOf(mesh.snapshot(), this.problem !== null && part.plan === null ? { ...part, problem: this.problem } : part)
  }

  /** Shapes measured, being measured, or given up on (SHAPE_TRIES failed) in this run. */
  private readonly shapesTried = new Set<string>()
  private readonly shapeTries = new Map<string, number>()

  /**
   * Once this agent knows the cluster's model (its own file, or a holder's announcement) and that model
   * outgrows the caches the generic calibration runs from, it measures its rpc-server again in the model's
   * shape (calibration-shape.ts) and announces that as `modelSpeed`; the coordinator plans with those once
   * every node has one. Only while no plan's llama-server uses the rpc-server: it takes one client at a time,
   * so a measurement then would wait for the plan to end (and a load that arrives during one waits for it:
   * seconds, against the minutes a big model's load takes). Kept per shape in the data dir.
   */
  private measureInModelShape(mesh: Mesh): void {
    if (!this.rpc.canMeasureAgain) return
    const model = clusterModel([mesh.announcement(), ...mesh.members().map((m) => m.announcement)])
    if (model?.shape === undefined) return
    const shape = calibrationShapeOf(model.shape, { cacheBytes: this.cacheBytes, offerBytes: this.memoryBudget })
    if (shape === null || this.shapesTried.has(shape.key) || this.rpc.modelSpeed?.shape === shape.key) return
    const plan = this.coordination?.view().plan ?? null
    if (plan?.assignments.some((a) => a.peerId === mesh.peerId && (a.layers !== null || a.output)) === true) return
    const tries = (this.shapeTries.get(shape.key) ?? 0) + 1
    this.shapeTries.set(shape.key, tries)
    this.shapesTried.add(shape.key)
    this.o.logger.info(
      { shape: shape.key, layers: [shape.smallLayers, shape.largeLayers] },
      "measuring the rpc-server in the cluster model's shape"
    )
    void this.rpc.measureInShape(shape).then((measured) => {
      // cut short (a fence restarted the server under it, seen when a coordinator claims its term): again
      if (!measured && tries < SHAPE_TRIES) this.shapesTried.delete(shape.key)
    })
  }

  private describeSelf(): SelfDescription {
    const belief = this.coordination?.belief() ?? { coordinator: null, plan: null }
    const staticBackends = this.staticBackends.list()
    return {
      agentVersion: AGENT_VERSION,
      rpc: {
        host: this.rpcHost,
        port: this.rpc.port,
        protocol: this.rpc.protocol,
        state: this.rpc.state,
        llamaBuild: this.o.binaries.version,
        // an external rpc-server cannot be restarted by us: it serves every term
        servingTerm: this.rpc.supervised ? (this.coordination?.servingTerm ?? 0) : (this.coordination?.election.currentTerm ?? 0),
        access: this.rpcAccess,
        load: this.relayLoads.current,
        cache: this.cache?.view ?? null,
        abort: this.rpc.abort
      },
      devices: this.rpc.devices,
      memoryBudget: this.memoryBudget,
      cpuThreads: this.o.rpcThreads,
      models: this.models,
      canCoordinate: this.models.length > 0 && existsSync(this.o.binaries.llamaServer),
      apiPort: this.o.apiPort,
      speed: this.rpc.speed,
      ...(this.rpc.modelSpeed !== null ? { modelSpeed: this.rpc.modelSpeed } : {}),
      ...(staticBackends.length > 0 ? { staticBackends } : {}),
      ...belief
    }
  }
}
