/**
 * One agent: its rpc-server (supervised, or an external one it attaches to), its speed measured once,
 * its place in the mesh, the coordination loop and the local HTTP API. Wires the pieces; the rules live
 * in @sollol/core.
 */
import type { Server } from 'node:http'
import { existsSync } from 'node:fs'
import { mkdir, readFile, statfs, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { freemem } from 'node:os'
import {
  cacheableTensors,
  calibrateRpcServer,
  CALIBRATION_METHOD,
  listCache,
  rpcCacheDir,
  seedRpcCache,
  touchCacheFile,
  trimRpcCache,
  defaultCacheRoot,
  defaultServedDevices,
  formatRpcVersion,
  listRpcServerDevices,
  LAN_TIMINGS,
  probeRpcServer,
  RpcServerSupervisor,
  type LlamaBinaries,
  type LocalDevice,
  type Logger,
  type RpcDeviceMemory,
  type RpcServerState
} from '@sollol/llama-cpp'
import { modelFiles, readModelInfo, tensorByteSizes } from '@sollol/gguf'
import {
  clusterEvents,
  EventLog,
  LAN_ELECTION_TIMINGS,
  LAN_MESH_TIMINGS,
  type Announcement,
  type ClusterView,
  type Device,
  type MeshTimings,
  type ModelRef,
  type RpcCacheView,
  type StaticBackend,
  type KvCacheTypes
} from '@sollol/core'
import { lanAddresses, loadOrCreateIdentity, Mesh, nextPersistedIncarnation, type SelfDescription } from '@sollol/mesh'
import { announcedDevices, defaultMemoryBudget, detectDevices, deviceBudgets, modelRef } from './capacity.js'
import { Coordination, LAN_COORDINATION_TIMINGS } from './coordinator.js'
import { startHttpApi, type Upstream } from './http-api.js'
import { AgentMetrics } from './metrics.js'
import { RpcGate } from './rpc-gate.js'
import { RelayLoads } from './relay-loads.js'
import { resolveModelSpec } from './model-store.js'

export const RPC_ACCESS_MODES = ['gated', 'tunnel', 'open'] as const
export type RpcAccessMode = (typeof RPC_ACCESS_MODES)[number]
import { AGENT_VERSION } from './version.js'

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
  readonly timings?: MeshTimings
  readonly logger: Logger
}

type RpcAnnounceState = SelfDescription['rpc']['state']
type Speed = NonNullable<Announcement['speed']>

const isLoopback = (host: string): boolean => host.startsWith('127.')

/**
 * The tensor cache's cap unless --rpc-cache-max says otherwise: half the free disk space where the agent
 * keeps its data, at most 64 GiB (room for the layers of a 70B Q4 model; the disk stays usable).
 */
async function defaultCacheCap(dir: string): Promise<number> {
  try {
    const fs = await statfs(dir)
    return Math.min(64 * 2 ** 30, Math.floor((fs.bavail * fs.bsize) / 2))
  } catch {
    return 8 * 2 ** 30
  }
}

const monotonic = (): number => performance.timeOrigin + performance.now()

export class Agent {
  private rpc: RpcServerSupervisor | undefined
  private mesh: Mesh | undefined
  private coordination: Coordination | undefined
  private http: Server | undefined
  private devices: Device[] = []
  /** The devices our rpc-server serves, in its order (empty: not listed; an external or old rpc-server). */
  private served: LocalDevice[] = []
  private models: ModelRef[] = []
  private speed: Speed | null = null
  private rpcProtocol: string | null = null
  private rpcState: RpcAnnounceState = 'starting'
  private externalProbe: NodeJS.Timeout | undefined
  private frozenCheck: NodeJS.Timeout | undefined
  private rpcStarting: Promise<void> | undefined
  /** False until the rpc-server is started and measured: it is announced as `starting` until then. */
  private rpcMeasured = false
  private eventWatch: NodeJS.Timeout | undefined
  /** Recent cluster events (joins, leaves, elections, re-plans) for the dashboard, told by comparing views. */
  private readonly events = new EventLog()
  private lastView: ClusterView | null = null
  private openAiTunnel: { peerId: string; entry: { port: number; close: () => Promise<void> } } | undefined
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
  /** Where the rpc-server listens: loopback behind the tunnel, the LAN address when open. */
  private readonly rpcBind: string
  private readonly rpcAccess: 'gated' | 'tunnel' | 'direct'
  private gate: RpcGate | undefined
  /** `$LLAMA_CACHE` of the rpc-server: its tensor cache lives in `rpc/` below (one per agent). */
  private readonly llamaCacheRoot: string
  private readonly tensorCache: string
  private readonly relayLoads: RelayLoads
  private cache: RpcCacheView | null = null
  private cacheTrim: NodeJS.Timeout | undefined
  private readonly seedAbort = new AbortController()
  /** The bare rpc-servers this agent speaks for, as last probed. */
  private readonly staticBackends = new Map<string, StaticBackend>()
  private staticProbe: NodeJS.Timeout | undefined
  private staticProbing = false
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
    this.rpcBind = this.rpcAccess === 'direct' ? this.rpcHost : '127.0.0.1'
    this.llamaCacheRoot = join(o.dataDir, 'llama-cache')
    this.tensorCache = rpcCacheDir(this.llamaCacheRoot)
    this.relayLoads = new RelayLoads(
      (hash) => void touchCacheFile(this.tensorCache, hash),
      // the server has written what it was sent to its cache by now: say so, with the load's numbers
      () => void this.refreshCache()
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
        await readModelInfo(path)
        this.models = [await modelRef(path, this.o.model.startsWith('ollama:') ? this.o.model : undefined)]
        this.modelPath = path
      } catch (err) {
        this.problem = `${(err as Error).message}; serving as a worker only`
        log.error({ model: this.o.model }, this.problem)
      }
    }
    // The rpc-server is started first (a port clash or a bad binary stops the agent before anything else
    // binds); it is probed and measured (the first time: seconds) while the mesh starts, so joining takes
    // no longer than the slower of the two. Until it is measured, the announcement says `starting`.
    await this.launchRpc()
    this.rpcStarting = this.measureRpc()
    this.rpcStarting.catch(() => {}) // awaited below; a failure there stops the agent
    const { key, created } = await loadOrCreateIdentity(this.o.dataDir)
    const mesh = new Mesh({
      cluster: this.o.cluster,
      privateKey: key,
      incarnation: await nextPersistedIncarnation(this.o.dataDir),
      port: this.o.p2pPort,
      ...(this.o.p2pHost !== undefined ? { listenHost: this.o.p2pHost, announceLoopback: isLoopback(this.o.p2pHost) } : {}),
      bootstrap: this.o.bootstrap,
      mdns: this.o.mdns,
      ...(this.o.clusterKey !== undefined ? { clusterKey: this.o.clusterKey } : {}),
      timings: this.o.timings ?? LAN_MESH_TIMINGS,
      logger: log,
      describeSelf: () => this.describeSelf(),
      coordination: () => {
        const view = this.coordination?.view() ?? { coordinator: null, plan: null, problem: null }
        return this.problem !== null && view.plan === null ? { ...view, problem: this.problem } : view
      },
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
      electionTimings: LAN_ELECTION_TIMINGS,
      timings: LAN_COORDINATION_TIMINGS,
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
    } else if (this.rpcAccess === 'gated' && this.rpc !== undefined) {
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
    coordination.start()
    this.eventWatch = setInterval(() => {
      this.recordEvents(mesh.view())
    }, 1000)
    log.info({ peerId: mesh.peerId, identity: created ? 'new' : 'kept', dataDir: this.o.dataDir }, 'agent identity')
    this.http = await startHttpApi({
      host: this.o.apiHost,
      port: this.o.apiPort,
      view: () => mesh.view(),
      events: (after) => this.events.since(after),
      plan: async () => await (this.coordination as Coordination).dryRun(),
      upstream: async () => await this.openAiUpstream(),
      metrics: new AgentMetrics({
        view: () => mesh.view(),
        rpcRestarts: () => this.rpc?.restartCount ?? 0,
        relayed: () => ({
          totalBytes: this.relayLoads.weightBytesTotal,
          lastLoadBytes: this.relayLoads.current?.weightBytes ?? null,
          cacheBytes: this.cache?.bytes ?? null
        }),
        llama: () => ({
          serving: coordination.serving,
          causes: coordination.stats.causes,
          metricsUrl: coordination.llamaMetricsUrl,
          token: this.o.apiToken
        })
      })
    })
    await this.rpcStarting
    log.info(
      {
        api: `http://${this.o.apiHost}:${this.o.apiPort}/v1/cluster`,
        rpc: `${this.rpcHost}:${this.rpcPortInUse()}`,
        cluster: this.o.cluster
      },
      'agent running'
    )
  }

  /** Starts the supervised rpc-server (an external one is only probed, later). */
  private async launchRpc(): Promise<void> {
    const log = this.o.logger
    if (this.o.rpcEndpoint === undefined) {
      const devices = await this.chooseDevices()
      const rpc = new RpcServerSupervisor({
        binary: this.o.binaries.rpcServer,
        host: this.rpcBind,
        port: this.o.rpcPort,
        threads: this.o.rpcThreads,
        cache: this.o.rpcCache,
        env: { LLAMA_CACHE: this.llamaCacheRoot },
        ...(devices !== undefined ? { devices } : {}),
        logger: log
      })
      this.rpc = rpc
      // A frozen rpc-server still accepts connections (the kernel does) but never answers: say so, so
      // that no plan uses it, and take it back when it thaws.
      this.frozenCheck = setInterval(() => {
        const frozen = rpc.isFrozen()
        if (frozen && this.rpcState === 'ready') this.setRpcState('frozen')
        else if (!frozen && this.rpcState === 'frozen' && rpc.state.kind === 'ready') this.setRpcState('ready')
      }, 1000)
      rpc.on('state', (state) => {
        this.onRpcState(state)
      })
      await rpc.start()
    }
  }

  /**
   * Which devices the rpc-server serves: `--rpc-device`, else every accelerator and then the CPU (the
   * rpc-server alone would leave the CPU out on a GPU box). Undefined: the server's default (a CPU).
   */
  private async chooseDevices(): Promise<string[] | undefined> {
    const local =
      this.o.binaries.devices ??
      (await listRpcServerDevices(this.o.binaries.rpcServer).catch((err: Error) => {
        this.o.logger.warn({ err: err.message }, 'could not list the devices of the rpc-server binary')
        return []
      }))
    const chosen = this.o.rpcDevices !== undefined ? [...this.o.rpcDevices] : defaultServedDevices(local)
    const names = chosen ?? local.filter((d) => d.backend === 'cpu').map((d) => d.name)
    this.served = names.flatMap((name) => local.filter((d) => d.name === name))
    if (this.served.length !== names.length) this.served = [] // a name it did not list: the server will say why
    if (local.length > 0)
      this.o.logger.info({ devices: local.map((d) => `${d.name} (${d.description})`), serves: names }, 'rpc-server devices')
    return chosen
  }

  /** Reads the rpc-server's devices and measures its speed (or attaches to an external one); then announces it. */
  private async measureRpc(): Promise<void> {
    let rpcDevices: readonly RpcDeviceMemory[] = []
    if (this.o.rpcEndpoint !== undefined) {
      rpcDevices = await this.probeExternal()
      this.externalProbe = setInterval(() => {
        void this.probeExternal()
      }, 10_000)
    } else {
      const probe = await probeRpcServer(this.rpcBind, this.o.rpcPort)
      this.rpcProtocol = formatRpcVersion(probe.version)
      rpcDevices = probe.devices
      if (this.served.length !== probe.devices.length) this.served = [] // not what was listed: plan it as one device
      // Measured now, while nobody uses it: it is announced as `starting` until this is done.
      const speeds = await this.measureSpeeds()
      if (this.stopping) return
      this.speed = speeds.node
      if (speeds.measured && this.served.some((d) => d.backend !== 'cpu') && this.rpc !== undefined) {
        // Measured with lavapipe (Mesa's software Vulkan): ggml-vulkan in this llama.cpp release aborts the
        // rpc-server ("corrupted double-linked list") in about half of the loads by a later client with
        // other tensors on the device. The calibration clients were such loads: serve from a fresh process.
        this.o.logger.info({}, 'restarting the rpc-server after measuring its devices (a fresh process for the first plan)')
        await this.rpc.stop()
        await this.rpc.start().catch((err: Error) => {
          this.o.logger.error({ err: err.message }, 'the rpc-server did not start again after measuring its devices')
        })
      }
      if (this.served.length > 0) {
        const budgets = deviceBudgets(
          this.served.map((d, i) => ({ ...d, memoryFree: probe.devices[i]?.free ?? d.memoryFree })),
          this.memoryBudget,
          this.o.maxDeviceMemory
        )
        this.devices = announcedDevices(this.served, probe.devices, budgets, freemem()).map((d, i) => ({
          ...d,
          speed: speeds.devices[i] ?? null
        }))
      }
    }
    if (this.served.length === 0) this.devices = await detectDevices(rpcDevices)
    if (this.stopping) return

    this.rpcMeasured = true
    this.mesh?.announceNow()
    if (this.rpc !== undefined && this.o.rpcCache) void this.keepCache()
    if ((this.o.rpcBackends ?? []).length > 0) {
      // beside the rest (a first measurement takes seconds; fencing must not wait for it)
      void this.probeStaticBackends()
      this.staticProbe = setInterval(() => void this.probeStaticBackends(), 10_000)
    }
  }

  /**
   * Probes every bare rpc-server: protocol and device memory (its budget: 75 % of what is free), its speed
   * measured once, when it first answers (before any plan uses it). One that refuses or closes is
   * `unreachable` (left out of plans until it answers again); one that times out is busy serving and keeps
   * its state.
   */
  private async probeStaticBackends(): Promise<void> {
    if (this.staticProbing) return
    this.staticProbing = true
    try {
      await this.probeStaticBackendsOnce()
    } finally {
      this.staticProbing = false
    }
  }

  private async probeStaticBackendsOnce(): Promise<void> {
    let changed = false
    for (const { host, port } of this.o.rpcBackends ?? []) {
      const key = `${host}:${port}`
      const last = this.staticBackends.get(key) ?? {
        host,
        port,
        protocol: null,
        state: 'probing',
        devices: [],
        memoryBudget: 0,
        speed: null
      }
      let next: StaticBackend = last
      try {
        const probe = await probeRpcServer(host, port)
        const free = probe.devices.reduce((sum, d) => sum + d.free, 0)
        next = {
          ...last,
          protocol: formatRpcVersion(probe.version),
          state: 'ready',
          // a bare server's devices have no names we can learn (the protocol gives memory only); each is
          // planned with 75 % of its free memory and its own --tensor-split entry, at the server's speed
          devices: probe.devices.map((d) => ({
            kind: 'cpu',
            name: `${key} #${d.index}`,
            memoryTotal: d.total,
            memoryFree: d.free,
            rpcIndex: d.index,
            budget: Math.floor(d.free * 0.75),
            speed: last.speed
          })),
          memoryBudget: Math.floor(free * 0.75)
        }
        if (last.speed === null && last.state !== 'ready') {
          const speed = await this.calibrate(key).catch((err: Error) => {
            this.o.logger.warn({ backend: key, err: err.message }, 'could not measure a static rpc-server; the planner assumes it is slow')
            return null
          })
          next = { ...next, speed, devices: next.devices.map((d) => ({ ...d, speed })) }
        }
      } catch (err) {
        if ((err as { kind?: string }).kind !== 'timeout') next = { ...last, state: 'unreachable' }
      }
      if (next.state !== last.state)
        this.o.logger.info({ backend: key, state: next.state, protocol: next.protocol }, 'static rpc-server (no agent, unprotected)')
      if (JSON.stringify(next) !== JSON.stringify(this.staticBackends.get(key))) changed = true
      this.staticBackends.set(key, next)
    }
    if (changed) this.mesh?.announceNow()
  }

  /** Re-reads the tensor cache's size and announces the change (and the relayed load with it). */
  private async refreshCache(): Promise<void> {
    const bytes = (await listCache(this.tensorCache)).reduce((sum, f) => sum + f.bytes, 0)
    if (this.cache !== null) this.cache = { ...this.cache, bytes }
    this.mesh?.announceNow()
  }

  /**
   * The rpc-server's tensor cache: seeded from this machine's model file (after the speed measurement,
   * so the two never compete for the CPU), then kept under its cap, least recently used out first.
   */
  private async keepCache(): Promise<void> {
    const log = this.o.logger.child({ component: 'tensor-cache' })
    const maxBytes = this.o.rpcCacheMax ?? (await defaultCacheCap(this.o.dataDir))
    this.cache = { bytes: 0, maxBytes, seeding: this.modelPath === undefined ? 'none' : 'running' }
    if (this.modelPath !== undefined) {
      const started = Date.now()
      try {
        // every shard of a split model holds some of the tensors
        const ranges = (await modelFiles(this.modelPath)).flatMap((shard) =>
          cacheableTensors(shard.header.tensors, tensorByteSizes(shard.header), shard.header.tensorDataOffset, shard.path)
        )
        const result = await seedRpcCache({
          modelPath: this.modelPath,
          modelId: this.models[0]?.id ?? 'model',
          ranges,
          cacheDir: this.tensorCache,
          maxBytes,
          signal: this.seedAbort.signal
        })
        this.cache = { ...this.cache, seeding: result.skipped > 0 ? 'partial' : 'done' }
        log.info({ ...result, ms: Date.now() - started, cacheDir: this.tensorCache }, 'tensor cache seeded from the model file')
      } catch (err) {
        if (this.seedAbort.signal.aborted) return
        this.cache = { ...this.cache, seeding: 'failed' }
        log.warn({ err: (err as Error).message }, 'could not seed the tensor cache; layers placed here will be sent over the LAN once')
      }
    }
    await this.refreshCache()
    // The rpc-server writes the cache itself during loads; trimming now and then keeps it under the cap.
    this.cacheTrim = setInterval(() => {
      void trimRpcCache(this.tensorCache, maxBytes)
        .then(async (freed) => {
          if (freed > 0) log.info({ freed }, 'tensor cache trimmed to its cap (least recently used out)')
          await this.refreshCache()
        })
        .catch((err: Error) => log.warn({ err: err.message }, 'tensor cache trim failed'))
    }, 30_000)
    this.cacheTrim.unref()
  }

  async stop(): Promise<void> {
    this.stopping = true
    clearInterval(this.externalProbe)
    clearInterval(this.frozenCheck)
    clearInterval(this.eventWatch)
    clearInterval(this.cacheTrim)
    clearInterval(this.staticProbe)
    this.seedAbort.abort()
    await new Promise<void>((resolve) => {
      if (this.http === undefined) resolve()
      else this.http.close(() => resolve())
    })
    this.http = undefined
    await this.coordination?.stop()
    await this.openAiTunnel?.entry.close()
    await this.gate?.stop()
    await this.mesh?.stop()
    await this.rpc?.stop()
  }

  private recordEvents(view: ClusterView): void {
    const events = clusterEvents(this.lastView, view)
    this.lastView = view
    if (events.length === 0) return
    this.events.add(events, view.generatedAt)
    for (const e of events) this.o.logger.info({ event: e.kind, peer: e.peerId ?? undefined }, e.message)
  }

  /** Where this agent forwards OpenAI requests: the coordinator's llama-server, through the mesh if remote. */
  private async openAiUpstream(): Promise<Upstream> {
    const mesh = this.mesh
    const view = this.coordination?.view()
    if (mesh === undefined || view === undefined || view.coordinator === null)
      return { unavailable: view?.problem ?? 'no coordinator elected yet' }
    if (view.plan === null || view.plan.server.state !== 'ready') {
      return {
        unavailable:
          view.plan === null
            ? (view.problem ?? 'no plan yet')
            : `the llama-server is ${view.plan.server.state}${view.plan.server.detail !== null ? ` (${view.plan.server.detail})` : ''}`
      }
    }
    const coordinator = view.coordinator.peerId
    if (coordinator === mesh.peerId) return { host: '127.0.0.1', port: this.o.serverPort }
    if (this.openAiTunnel?.peerId !== coordinator) {
      const previous = this.openAiTunnel
      this.openAiTunnel = { peerId: coordinator, entry: await mesh.openTunnel(coordinator, 'openai') }
      await previous?.entry.close()
    }
    return { host: '127.0.0.1', port: this.openAiTunnel.entry.port }
  }

  private rpcPortInUse(): number {
    return this.o.rpcEndpoint?.port ?? this.o.rpcPort
  }

  /**
   * Fences the supervised rpc-server for a new (term, coordinator): whatever llama-server of another
   * coordinator used it is cut off. Behind the gate or the tunnel it listens on loopback, so cutting their
   * connections (and the coordination loop having stopped our own llama-server first) is the whole fence:
   * the rpc-server, its loaded state and its tensor cache stay. Open to the LAN, it is restarted.
   */
  private async fence(term: number, coordinator: string | undefined): Promise<void> {
    await this.rpcStarting?.catch(() => {})
    const rpc = this.rpc
    if (rpc === undefined) return // an external rpc-server cannot be fenced by us (documented)
    const cut = (this.mesh?.cutTunnels((peer) => peer === coordinator) ?? 0) + (this.gate?.cut() ?? 0)
    if (this.rpcAccess !== 'direct') {
      this.o.logger.info({ term, coordinator, cut }, 'fenced: connections not from the coordinator cut (rpc-server kept)')
      return
    }
    this.o.logger.info({ term }, 'fencing: restarting the rpc-server for the new term (it is open to the LAN)')
    await rpc.stop()
    await rpc.start()
  }

  /**
   * Seconds per GiB of layers, measured once per llama.cpp build, thread count and devices, then cached:
   * the server as a whole (its first device, as llama.cpp fills it) and, when it serves several devices,
   * each device alone (the whole calibration model on it), so the planner can price each.
   */
  private async measureSpeeds(): Promise<{ node: Speed | null; devices: Array<Speed | null>; measured: boolean }> {
    if (this.o.rpcSpeed !== undefined) {
      this.o.logger.info({ secondsPerGiB: this.o.rpcSpeed }, 'rpc-server speed given by --rpc-speed (not measured)')
      const given = { secondsPerGiB: this.o.rpcSpeed, measuredAt: new Date().toISOString(), method: 'given by --rpc-speed' }
      return { node: given, devices: this.served.map(() => given), measured: false }
    }
    const file = join(this.o.dataDir, 'calibration.json')
    const served = this.served.map((d) => d.name)
    const key = JSON.stringify({
      build: this.o.binaries.version,
      threads: this.o.rpcThreads,
      devices: served.length > 0 ? served : (this.o.rpcDevices ?? null),
      method: CALIBRATION_METHOD
    })
    type Speeds = { node: Speed | null; devices: Array<Speed | null>; measured: boolean }
    if (!this.o.recalibrate) {
      try {
        const cached = JSON.parse(await readFile(file, 'utf8')) as { key: string; speed: Speed; devices?: Array<Speed | null> }
        if (cached.key === key) return { node: cached.speed, devices: cached.devices ?? [], measured: false }
      } catch {}
    }
    const endpoint = `${this.rpcBind}:${this.o.rpcPort}`
    const measure = async (tensorSplit: number[] | undefined, what: string): Promise<Speed | null> => {
      try {
        const started = Date.now()
        const speed = await this.calibrate(endpoint, tensorSplit)
        this.o.logger.info(
          { what, secondsPerGiB: Number(speed.secondsPerGiB.toFixed(4)), ms: Date.now() - started },
          'rpc-server speed measured'
        )
        return speed
      } catch (err) {
        this.o.logger.warn(
          { what, err: (err as Error).message },
          'could not measure the rpc-server speed; the planner will assume it is slow'
        )
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
        this.o.logger.warn({ file, err: err.message }, 'could not keep the measured speed; it will be measured again at the next start')
      })
    }
    return result
  }

  /**
   * Measures an rpc-server's speed (ours, or a bare one we speak for) with llama-server on this machine;
   * `tensorSplit` puts the whole calibration model on one of its devices.
   */
  private async calibrate(endpoint: string, tensorSplit?: number[]): Promise<Speed> {
    const result = await calibrateRpcServer({
      llamaServer: this.o.binaries.llamaServer,
      endpoint,
      cacheDir: join(defaultCacheRoot(), 'calibration'),
      ...(tensorSplit !== undefined ? { tensorSplit } : {}),
      logger: this.o.logger
    })
    return { secondsPerGiB: result.secondsPerGiB, measuredAt: result.measuredAt, method: result.method }
  }

  private describeSelf(): SelfDescription {
    const belief = this.coordination?.belief() ?? { coordinator: null, plan: null }
    return {
      agentVersion: AGENT_VERSION,
      rpc: {
        host: this.rpcHost,
        port: this.rpcPortInUse(),
        protocol: this.rpcProtocol,
        state: this.rpcMeasured ? this.rpcState : 'starting',
        llamaBuild: this.o.binaries.version,
        // an external rpc-server cannot be restarted by us: it serves every term
        servingTerm: this.rpc === undefined ? (this.coordination?.election.currentTerm ?? 0) : (this.coordination?.servingTerm ?? 0),
        access: this.rpcAccess,
        load: this.relayLoads.current,
        cache: this.cache
      },
      devices: this.devices,
      memoryBudget: this.memoryBudget,
      cpuThreads: this.o.rpcThreads,
      models: this.models,
      canCoordinate: this.models.length > 0 && existsSync(this.o.binaries.llamaServer),
      apiPort: this.o.apiPort,
      speed: this.speed,
      ...(this.staticBackends.size > 0 ? { staticBackends: [...this.staticBackends.values()] } : {}),
      ...belief
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
    this.setRpcState(next)
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
