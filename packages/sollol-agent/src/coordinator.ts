/**
 * The coordination loop of one agent. Every agent runs it; the elected one acts. It asks pure code what
 * is true (election, plan) and does the I/O: starts, checks and stops llama-server, and fences its own
 * rpc-server on every new term.
 *
 * Fencing (why two llama-servers never share rpc-servers): an rpc-server serves one client, and a second
 * llama-server on it would hang. At every change of (term, coordinator) each agent fences its rpc-server:
 * it stops its own llama-server unless it coordinates, then cuts every gate and tunnel connection not from
 * the coordinator (an rpc-server behind them listens on loopback only, so those are its only clients, and it
 * frees a client's buffers when the connection closes: ../shared notes, "When the client disconnects, all
 * its buffers are freed"), and announces `rpc.servingTerm`. Only an rpc-server open to the LAN
 * (`--rpc-access open`), whose clients we cannot cut, is restarted instead. A coordinator plans only with
 * rpc-servers serving its own term. A failed fence is retried with a growing delay.
 */
import {
  allocationFailures,
  unloadableModel,
  LlamaServerSupervisor,
  layerEndpoints,
  layerRanges,
  rpcDeviceNames,
  stageKey,
  type LlamaBinaries,
  type Logger,
  type SupervisorTimings
} from '@sollol/llama-cpp'
import { readModelInfo, type ModelInfo } from '@sollol/gguf'
import {
  kvBytesPerToken,
  kvBytesPerTokenByLayer,
  type KvCacheTypes,
  budgetAfterAllocationFailure,
  fenceBackoffMs,
  INITIAL_RECONCILE_STATE,
  nextActions,
  startBackoffMs,
  isStaticPeer,
  staticAnnouncements,
  clusterModel,
  Election,
  exclusionReason,
  hopSeconds,
  plan as makePlan,
  PlanError,
  rankCandidates,
  type Announcement,
  type ElectionTimings,
  type Plan,
  planDevicesOf,
  type PlanNode,
  type CoordinatorAction,
  type PlanView,
  type ReconcileState,
  type Role,
  type CoordinationPart,
  type ServingPlan,
  type Waiting,
  calibrationKeyOf,
  needsModelSpeed,
  planningSpeeds,
  servesAccelerator,
  shapedPricing
} from '@sollol/core'
import type { Mesh } from '@sollol/mesh'
import { formatBytes } from './options.js'

export interface CoordinationTimings {
  /** Wait this long after the last change of the cluster before (re)starting llama-server: one restart per burst. */
  readonly replanDebounceMs: number
  /** A node joined: wait at most this long for running requests to finish before restarting. */
  readonly idleWaitMs: number
  /** Period of the liveness check (a real 1-token completion). */
  readonly livenessIntervalMs: number
  /** Minimum delay between two llama-server starts after failures (doubles up to 8x). */
  readonly restartBackoffMs: number
  /**
   * A cluster's first plan waits at most this long for every node's speed measured in the model's shape
   * (calibration-shape.ts); after it, the plan is priced with the generic calibration.
   */
  readonly shapeWaitMs: number
}

export const LAN_COORDINATION_TIMINGS: CoordinationTimings = {
  replanDebounceMs: 1000,
  idleWaitMs: 30_000,
  livenessIntervalMs: 5000,
  restartBackoffMs: 1000,
  shapeWaitMs: 60_000
}

/** Tests of agents in one process: a debounce that still joins a burst of starts, shorter waits. */
export const FAST_COORDINATION_TIMINGS: CoordinationTimings = {
  replanDebounceMs: 500,
  idleWaitMs: 5000,
  livenessIntervalMs: 2000,
  restartBackoffMs: 500,
  shapeWaitMs: 10_000
}

export interface CoordinationOptions {
  readonly mesh: Mesh
  readonly binaries: LlamaBinaries
  readonly modelPath: string | undefined
  /** Address in the server URL (this host's LAN address). */
  readonly serverHost: string
  /** Where llama-server listens: all interfaces (the LAN may use the plan's URL), or loopback for a loopback-only agent. */
  readonly serverBind: string
  readonly serverPort: number
  /** Bearer token llama-server requires (`--api-token`); none = open to the LAN. */
  readonly apiToken: string | undefined
  readonly contextSize: number | undefined
  /** KV cache types llama-server runs with (`--cache-type-k/v`), planned accordingly; undefined = f16. */
  readonly cacheTypes?: KvCacheTypes
  readonly threads: number
  readonly electionTimings: ElectionTimings
  readonly timings: CoordinationTimings
  readonly supervisorTimings: SupervisorTimings
  /** Fences this agent's rpc-server for `term` and its coordinator (see fencing above). */
  readonly fence: (term: number, coordinator: string | undefined) => Promise<void>
  /**
   * llama.cpp can never load the model file (its architecture or a tensor type is unknown to the build):
   * the agent withdraws the model and serves as a worker; `reason` is one line for status and the log.
   */
  readonly onModelUnloadable?: (reason: string) => void
  readonly logger: Logger
  readonly now: () => number
}

interface Running {
  readonly startedAt: number
  readonly signature: string
  readonly plan: Plan
  readonly llama: LlamaServerSupervisor
  /** The plan's cost per token with what is known now (see `reprice`): a re-plan's gain is weighed against it. */
  predictedSecondsPerToken: number
}

/** The parts of a plan that require a restart when they change. */
const signatureOf = (p: Plan): string => JSON.stringify([p.rpc, p.tensorSplit, p.contextSize])

export class Coordination {
  readonly election: Election
  private role: Role = 'observing'
  private servingTermValue = 0
  /** The (term, coordinator) the rpc-server was last fenced for, and when a failed fence may be tried again. */
  private fenceFailures = 0
  /** What the decision loop remembers (nextActions in core); fences and checks beside it report into it. */
  private rs: ReconcileState = INITIAL_RECONCILE_STATE
  private running: Running | undefined
  private planView: PlanView | null = null
  private problem: string | null = null
  /** The calibration shape the last plan was priced with (shapedPricing); null: the generic calibration. */
  private pricedWith: string | null = null
  /** When the first plan began to wait for measurements in the model's shape (shapeWait). */
  private shapeWaitSince: number | undefined
  /** Set once llama-server said the model file can never load: no further starts (see onModelUnloadable). */
  private unloadable: string | undefined
  private generation = 0
  private modelInfo: ModelInfo | undefined
  private failures = 0
  private readonly rttInFlight = new Set<string>()
  private readonly rtts = new Map<string, { ms: number; at: number }>()
  /**
   * Budgets lowered, per peer (`peerId`) or per device of one (`peerId/device`), per incarnation of that
   * agent: after llama-server could not allocate there (planned smaller), or to 0 after the device aborted
   * running the model (left out).
   */
  private readonly budgetCuts = new Map<string, { peerId: string; incarnation: number; budget: number; reason: string }>()
  /** Backend aborts already weighed: peer id -> the abort's time as announced. */
  private readonly seenAborts = new Map<string, string>()
  /** The peers of the last plan this coordinator started (kept after it ends: an abort is announced after). */
  private lastStartedPeers: ReadonlySet<string> = new Set()
  private loggedProblem: string | null = null
  private lastPlan: { key: string; plan: Plan } | undefined
  /** Tunnel entries to workers' protected rpc-servers, by peer. */
  private readonly tunnels = new Map<string, { port: number; close: () => Promise<void> }>()
  /** llama-server's endpoint -> the rpc endpoint the node announced (what users see). */
  private readonly announcedEndpoint = new Map<string, string>()
  /** How long the last llama-server load took: what a re-plan costs (servingAction, via nextActions in core). */
  private lastLoadMs: number | undefined
  /**
   * The nodes of the last serving plan another coordinator announced, and its term: when this agent takes
   * over, a plan that has all of them that are still there starts at once (servingAction in core).
   */
  private seenPlan: { term: number; generation: number; nodes: ReadonlySet<string> } | undefined
  /** Live nodes left out of the last plan computed, with the reason. */
  private excluded: Array<{ peerId: string; reason: string }> = []
  private ticking = false
  private stopped = false
  private restarting: Promise<void> | undefined

  constructor(private readonly o: CoordinationOptions) {
    this.election = new Election(o.mesh.peerId, o.electionTimings, o.now())
  }

  /** For metrics: llama-server starts by cause (their sum is all starts), and whether one serves now. */
  readonly stats = { causes: {} as Record<string, number> }
  private cause = 'first plan'

  get serving(): boolean {
    return this.running?.llama.state.kind === 'ready'
  }

  /** The local llama-server's /metrics URL while this agent coordinates and serves. */
  get llamaMetricsUrl(): string | undefined {
    return this.serving ? `${this.running?.llama.url ?? ''}/metrics` : undefined
  }

  get servingTerm(): number {
    return this.servingTermValue
  }

  start(): void {
    this.o.mesh.on('announcement', (a) => {
      // A claim counts only from a node that could coordinate: it holds the cluster's model and a llama-server.
      if (a.coordinator?.peerId === a.peerId && !this.eligible(a)) {
        this.o.logger.warn({ peer: a.peerId, term: a.coordinator.term }, 'ignored a coordinator claim from a node that cannot coordinate')
        return
      }
      if (this.election.observe(a, this.o.now())) void this.tick()
    })
    this.o.mesh.on('membership', (event) => {
      if (event.type === 'member:left') {
        this.rtts.delete(event.peerId)
        void this.closeTunnel(event.peerId)
      }
      void this.tick()
    })
    // time-based decisions (settle, debounce, backoff) run on the mesh's membership clock (250 ms)
    this.o.mesh.on('tick', this.onTick)
  }

  private readonly onTick = (): void => void this.tick()

  /** Stops the loop and llama-server; a start under way is waited for, then stopped, never left running. */
  async stop(): Promise<void> {
    this.stopped = true
    this.o.mesh.off('tick', this.onTick)
    await this.restarting
    await this.stopServer('agent stopping')
    await Promise.all([...this.tunnels.keys()].map(async (peer) => await this.closeTunnel(peer)))
  }

  private async closeTunnel(peerId: string): Promise<void> {
    const tunnel = this.tunnels.get(peerId)
    this.tunnels.delete(peerId)
    await tunnel?.close()
  }

  private eligible(a: Announcement): boolean {
    const model = clusterModel(this.liveAnnouncements())
    return model !== undefined && rankCandidates([a], model.id).length === 1
  }

  /** What this agent announces about coordination. */
  belief(): Pick<Announcement, 'coordinator' | 'plan'> {
    const coordinator = this.election.coordinator
    return {
      coordinator: coordinator !== undefined ? { peerId: coordinator, term: this.election.currentTerm } : null,
      plan: this.role === 'coordinator' ? this.currentPlanView() : null
    }
  }

  /** The plan view, with how far llama-server has come while it loads (detail and progress). */
  private currentPlanView(): PlanView | null {
    const view = this.planView
    const running = this.running
    if (view === null || view.server.state !== 'loading' || running === undefined) return view
    const { stage, fraction } = running.llama.loadProgress()
    const seconds = Math.round((this.o.now() - running.startedAt) / 1000)
    return { ...view, server: { ...view.server, detail: `${stage}, ${seconds} s`, progress: fraction } }
  }

  view(): CoordinationPart {
    const coordinator = this.election.coordinator
    const term = this.election.currentTerm
    // A suspect coordinator (slow to answer under load) still coordinates; only a gone one does not.
    const present = coordinator === this.o.mesh.peerId || this.o.mesh.members().some((m) => m.announcement.peerId === coordinator)
    if (coordinator === undefined || !present)
      return { coordinator: null, plan: null, problem: this.problem ?? 'no coordinator elected yet' }
    const planView =
      coordinator === this.o.mesh.peerId
        ? this.currentPlanView()
        : (this.o.mesh.members().find((m) => m.announcement.peerId === coordinator)?.announcement.plan ?? null)
    return {
      coordinator: { peerId: coordinator, term },
      plan: planView !== null && planView.term === term ? planView : null,
      problem: coordinator === this.o.mesh.peerId ? this.problem : null
    }
  }

  /** A dry-run plan for the current cluster (for `sollol-agent plan`). */
  async dryRun(): Promise<Plan> {
    if (this.o.modelPath === undefined)
      throw new PlanError('This agent holds no model: start it with --model FILE, or run `sollol-agent plan --model FILE`', [])
    this.modelInfo ??= await readModelInfo(this.o.modelPath)
    return (await this.computePlan(this.liveAnnouncements(), this.election.currentTerm, true)).plan
  }

  /** Alive agents, and the bare rpc-servers they speak for (planned like nodes; no agent, no fence). */
  private liveAnnouncements(): Announcement[] {
    const agents = [
      this.o.mesh.announcement(),
      ...this.o.mesh
        .members()
        .filter((m) => m.status === 'alive')
        .map((m) => m.announcement)
    ]
    return [...agents, ...staticAnnouncements(agents)]
  }

  private async tick(): Promise<void> {
    if (this.ticking || this.stopped) return
    this.ticking = true
    try {
      await this.step()
    } catch (err) {
      this.o.logger.error({ err: (err as Error).message }, 'coordination step failed')
    } finally {
      this.ticking = false
    }
  }

  /** Observe, decide (nextActions, pure), execute. Nothing is awaited between reading and writing `rs`. */
  private async step(): Promise<void> {
    const now = this.o.now()
    const live = this.liveAnnouncements()
    // Members that have not left: alive, or suspect (silent for a while, or a connection just closed).
    // Losing the role or a place in the serving plan takes a loss, not a suspicion: a machine busy loading
    // a model answers late, and treating that as a departure turned every busy moment into a reload.
    const members = this.o.mesh.members()
    const present = new Set([this.o.mesh.peerId, ...members.map((m) => m.announcement.peerId)])
    const model = clusterModel(live)
    const candidates = model !== undefined ? rankCandidates(live, model.id).map((a) => a.peerId) : []
    // suspect model holders count as rivals: one that is slow, not gone, may claim the same term
    const all = [this.o.mesh.announcement(), ...members.map((m) => m.announcement)]
    const contenders = model !== undefined ? rankCandidates(all, model.id).map((a) => a.peerId) : []
    const decision = this.election.decide(present, candidates, now, contenders)
    if (decision.role !== this.role) {
      this.o.logger.info({ role: decision.role, term: this.election.currentTerm, coordinator: this.election.coordinator }, 'role')
      this.role = decision.role
    }
    if (decision.claimTerm !== undefined) {
      this.o.logger.info({ term: decision.claimTerm }, 'claiming the coordinator role')
      this.o.mesh.announceNow()
    }
    const term = this.election.currentTerm
    const isCoordinator = this.role === 'coordinator'
    this.noteServingPlan(members)
    // The plan is made only where it may be used: making it opens tunnels to the nodes it names.
    const desired = isCoordinator && this.servingTermValue === term ? await this.desiredPlan(live, term) : undefined
    const running = this.running
    if (running !== undefined && desired !== undefined) this.reprice(running, desired.plan)
    const ready = running !== undefined && this.planView?.server.state === 'ready'
    const result = nextActions(
      desired?.serving,
      {
        isCoordinator,
        term,
        coordinator: this.election.coordinator,
        servingTerm: this.servingTermValue,
        running:
          running === undefined
            ? undefined
            : {
                signature: running.signature,
                predictedSecondsPerToken: running.predictedSecondsPerToken,
                nodes: running.plan.nodes.map((n) => n.peerId),
                ready,
                frozen: ready && running.llama.isFrozen()
              },
        busy: this.restarting !== undefined,
        stillThere: desired?.stillThere ?? new Set(),
        lastLoadMs: this.lastLoadMs,
        takeOver: this.seenPlan !== undefined && this.seenPlan.term < term ? { previousPlanNodes: this.seenPlan.nodes, present } : undefined
      },
      this.rs,
      now,
      this.o.timings
    )
    this.rs = result.state
    this.explainWaiting(result.waiting, model !== undefined, term)
    for (const action of result.actions) await this.execute(action, desired?.plan, term)
  }

  /**
   * Prices the running plan with what is known now. A plan with the same layout (signature) as the running
   * one costs what the running one does, so the desired plan's price is the running plan's. The first price
   * came from the RTTs sampled during start-up load (they only go down after: the minimum of one ping a
   * minute) and the speeds announced then, and it was kept: the view showed it for good, and a re-plan's
   * gain was weighed against it. The view's prediction follows (announced when it moved by more than 5 %,
   * so that a settling RTT does not re-gossip every minute).
   */
  private reprice(running: Running, desired: Plan): void {
    if (signatureOf(desired) !== running.signature) return
    const now = desired.predictedSecondsPerToken
    const view = this.planView
    // the prices' basis changed (every node measured in the model's shape): always shown
    const newBasis = view !== null && (view.pricedWith ?? null) !== this.pricedWith
    if (!(now > 0) || (!newBasis && Math.abs(now - running.predictedSecondsPerToken) <= 0.05 * running.predictedSecondsPerToken)) return
    this.o.logger.info(
      {
        before: Number((1 / running.predictedSecondsPerToken).toFixed(1)),
        now: Number((1 / now).toFixed(1)),
        prompt: desired.predictedPromptTokensPerSecond === null ? null : Math.round(desired.predictedPromptTokensPerSecond),
        pricedWith: this.pricedWith ?? 'generic calibration'
      },
      'the running plan re-priced with what is known now (tokens per second predicted)'
    )
    running.predictedSecondsPerToken = now
    if (view !== null) {
      this.planView = {
        ...view,
        predictedTokensPerSecond: desired.predictedTokensPerSecond,
        predictedPromptTokensPerSecond: desired.predictedPromptTokensPerSecond,
        pricedWith: this.pricedWith
      }
      this.o.mesh.announceNow()
    }
  }

  /** Remembers the nodes of the plan another coordinator serves (its announcement goes when it does). */
  private noteServingPlan(members: ReturnType<Mesh['members']>): void {
    for (const { announcement: a } of members) {
      const plan = a.plan
      if (plan === null || plan.server.state !== 'ready' || a.coordinator?.peerId !== a.peerId) continue
      const seen = this.seenPlan
      if (seen !== undefined && (seen.term > plan.term || (seen.term === plan.term && seen.generation === plan.generation))) continue
      this.seenPlan = {
        term: plan.term,
        generation: plan.generation,
        nodes: new Set(plan.assignments.filter((x) => x.layers !== null).map((x) => x.peerId))
      }
    }
  }

  private explainWaiting(waiting: Waiting, modelKnown: boolean, term: number): void {
    if (waiting === 'not coordinator') {
      this.planView = null
      this.problem = modelKnown ? null : 'no agent holds a model (start one with --model FILE)'
    } else if (waiting === 'fencing') this.problem = `fencing: waiting for this node's rpc-server to serve term ${term}`
  }

  private async execute(action: CoordinatorAction, desired: Plan | undefined, term: number): Promise<void> {
    switch (action.kind) {
      case 'stop-server':
        if (action.why === 'not coordinator') {
          await this.stopServer(`no longer coordinator (term ${term})`)
          return
        }
        this.cause = action.why === 'frozen' ? 'llama-server frozen' : 'liveness failed'
        // a stopped (SIGSTOP) process will not answer: no need to wait for timeouts
        await this.stopServer(
          action.why === 'frozen'
            ? 'llama-server is frozen (stopped process)'
            : 'liveness check failed twice (an rpc-server is frozen or unreachable)'
        )
        return
      case 'fence':
        this.fence(action.key, term)
        return
      case 'check-liveness':
        if (this.running !== undefined) this.checkLiveness(this.running)
        return
      case 'start-server': {
        if (desired === undefined) return
        if (action.why === 'pays')
          this.o.logger.info(
            {
              current: this.running?.predictedSecondsPerToken,
              desired: desired.predictedSecondsPerToken,
              lastLoadMs: this.lastLoadMs
            },
            'a better plan pays for its reload: re-planning'
          )
        this.restarting = this.restart(desired, signatureOf(desired), term).finally(() => {
          this.restarting = undefined
        })
      }
    }
  }

  /** Runs beside the loop; the result goes into `rs` for the next decision (a failure backs off). */
  private fence(key: string, term: number): void {
    this.o.fence(term, this.election.coordinator).then(
      () => {
        this.rs = { ...this.rs, fencing: false, fencedFor: key }
        this.fenceFailures = 0
        this.servingTermValue = Math.max(this.servingTermValue, term)
        this.o.mesh.announceNow()
      },
      (err: Error) => {
        this.fenceFailures++
        const delay = fenceBackoffMs(this.fenceFailures)
        this.rs = { ...this.rs, fencing: false, nextFenceAt: this.o.now() + delay }
        this.o.logger.error({ err: err.message, term, retryInMs: delay }, 'fencing the rpc-server failed')
      }
    )
  }

  /**
   * Where llama-server connects for `a`'s rpc-server: its own on loopback, a direct one at its LAN
   * address, a protected one through a tunnel entry on loopback (opened once per peer).
   */
  private async connectEndpoint(a: Announcement): Promise<string> {
    const announced = `${a.rpc.host}:${a.rpc.port}`
    let endpoint = announced
    if (a.peerId === this.o.mesh.peerId && a.rpc.access !== 'direct') {
      endpoint = `127.0.0.1:${a.rpc.port}` // our own, on loopback behind the gate or tunnel
    } else if (a.rpc.access === 'tunnel') {
      let tunnel = this.tunnels.get(a.peerId)
      if (tunnel === undefined) {
        tunnel = await this.o.mesh.openTunnel(a.peerId, 'rpc')
        this.tunnels.set(a.peerId, tunnel)
      }
      endpoint = `127.0.0.1:${tunnel.port}`
    }
    this.announcedEndpoint.set(endpoint, announced)
    return endpoint
  }

  /**
   * An rpc-server of the last plan this coordinator started aborted in a compute backend (a graph that
   * device cannot run: ggml's Vulkan backend has no kernel for TQ1_0 weights in this release, and over RPC
   * llama.cpp cannot know, as an RPC device claims every op): its devices of that kind get no budget for
   * this model from now on (a budget cut to 0, shown with ggml's line). The node keeps serving with its
   * other devices. Each abort is weighed once; one from before this coordinator's plan is not its to
   * weigh (it learns the same way if it happens again); a restarted agent (new incarnation, perhaps a new
   * llama.cpp) is tried again.
   */
  private noteBackendAborts(live: readonly Announcement[]): void {
    for (const a of live) {
      const abort = a.rpc.abort
      if (abort === null || abort === undefined || this.seenAborts.get(a.peerId) === abort.at) continue
      this.seenAborts.set(a.peerId, abort.at)
      if (!this.lastStartedPeers.has(a.peerId)) continue
      const ofKind = planDevicesOf(a.devices) !== undefined ? a.devices.filter((d) => d.kind === abort.kind) : []
      const perDevice = ofKind.length > 0 && ofKind.length < a.devices.length
      const where = perDevice ? ofKind.map((d) => d.name).join(', ') : 'its rpc-server'
      const reason = `${where} aborted running this model (${abort.line}); left out of plans for it`
      for (const key of perDevice ? ofKind.map((d) => `${a.peerId}/${d.name}`) : [a.peerId])
        this.budgetCuts.set(key, { peerId: a.peerId, incarnation: a.incarnation, budget: 0, reason })
      this.o.logger.warn(
        { peerId: a.peerId, backend: abort.kind, line: abort.line },
        `${where} cannot run this model: left out of its plans`
      )
    }
  }

  /** What a node (or one device of it) is planned with: its offer, or less after llama-server could not allocate there. */
  private budgetOf(a: Announcement, offer = a.memoryBudget, device: string | null = null): number {
    const cut = this.budgetCuts.get(device === null ? a.peerId : `${a.peerId}/${device}`)
    // a restarted agent (new incarnation) starts afresh: its memory may have been freed
    if (cut === undefined || cut.incarnation !== a.incarnation) return offer
    return Math.min(offer, cut.budget)
  }

  /** After a failed start: lowers the budget of every node that could not allocate what the plan gave it. */
  private cutBudgets(desired: Plan, output: readonly string[]): string[] {
    const notes: string[] = []
    for (const failure of allocationFailures(output)) {
      const node =
        failure.endpoint === 'host'
          ? (desired.nodes.find((n) => n.peerId === this.o.mesh.peerId && (n.device === null || /^cpu$/i.test(n.device))) ??
            desired.nodes.find((n) => n.peerId === this.o.mesh.peerId))
          : desired.nodes.find((n) => stageKey(n.rpc, n.deviceIndex) === failure.endpoint)
      const member = node === undefined ? undefined : this.announcementOf(node.peerId)
      if (node === undefined || member === undefined) continue
      const budget = budgetAfterAllocationFailure(node.memory.budget, node.memory.total)
      const reason = `could not allocate ${formatBytes(failure.bytes ?? node.memory.total)} for the plan; planned with ${formatBytes(budget)} from now on`
      const key = node.device === null ? node.peerId : `${node.peerId}/${node.device}`
      this.budgetCuts.set(key, { peerId: node.peerId, incarnation: member.incarnation, budget, reason })
      notes.push(`${node.hostname ?? node.peerId}${node.device === null ? '' : ` ${node.device}`}: ${reason}`)
    }
    return notes
  }

  private announcementOf(peerId: string): Announcement | undefined {
    return this.liveAnnouncements().find((a) => a.peerId === peerId)
  }

  /**
   * Per-token cost of using a node (cost-model.ts), from the RTT measured so far. Samples run beside the
   * loop, never awaited by it (a slow peer must not stall elections): the RTT is the minimum of TCP
   * handshakes with the node's mesh port (mesh.tcpRtt: the network's time, not the agent's), sampled at
   * most once a minute while a plan runs (the first samples come during start-up load and
   * overstate it; sampling faster was tried: each lower sample changed the desired plan and, with a model
   * that loads in a second, re-planned several times in the first half minute), every 5 s while none does
   * (the first plan's wait for measurements in the model's shape: nothing to re-plan, and the samples it
   * takes then price the first plan's hops); until one arrives the LAN default is used.
   */
  private hopCost(peerId: string, now: number): number {
    if (peerId === this.o.mesh.peerId) return hopSeconds(true, undefined)
    if (isStaticPeer(peerId)) return hopSeconds(false, undefined) // no agent to ping: the LAN default
    const known = this.rtts.get(peerId)
    const every = this.running === undefined ? 5_000 : 60_000
    if ((known === undefined || now - known.at > every) && !this.rttInFlight.has(peerId)) {
      this.rttInFlight.add(peerId)
      // the kernel's answer (TCP handshake), else a libp2p ping (an in-memory transport)
      void this.o.mesh
        .tcpRtt(peerId)
        .then(async (sample) => sample ?? (await this.o.mesh.rtt(peerId)))
        .then((sample) => {
          if (sample !== undefined) this.rtts.set(peerId, { ms: Math.min(sample, this.rtts.get(peerId)?.ms ?? Infinity), at: this.o.now() })
        })
        .finally(() => this.rttInFlight.delete(peerId))
    }
    return hopSeconds(false, known?.ms)
  }

  private async computePlan(
    live: readonly Announcement[],
    term: number,
    dryRun: boolean
  ): Promise<{ plan: Plan; excluded: Array<{ peerId: string; reason: string }>; usable: string[] }> {
    const info = this.modelInfo
    const self = this.o.mesh.announcement()
    if (info === undefined) throw new PlanError('model not read yet', [])
    if (!dryRun) this.noteBackendAborts(live)
    const nodes: PlanNode[] = []
    const excluded: Array<{ peerId: string; reason: string }> = []
    const candidates = live.filter((a) => exclusionReason(a, self, dryRun ? undefined : term) === null)
    const pricedWith = shapedPricing(self.models[0]?.shape, candidates)
    if (!dryRun) this.pricedWith = pricedWith
    for (const a of live) {
      const reason = exclusionReason(a, self, dryRun ? undefined : term)
      if (reason !== null) {
        excluded.push({ peerId: a.peerId, reason })
        continue
      }
      const { speed, devices } = planningSpeeds(a, pricedWith)
      nodes.push({
        peerId: a.peerId,
        hostname: a.hostname,
        rpc: dryRun ? `${a.rpc.host}:${a.rpc.port}` : await this.connectEndpoint(a),
        memoryBudget: this.budgetOf(a),
        secondsPerGiB: speed?.secondsPerGiB,
        ...(speed?.fixedSecondsPerToken !== undefined ? { fixedSecondsPerToken: speed.fixedSecondsPerToken } : {}),
        ...(speed?.promptSecondsPerGiB !== undefined ? { promptSecondsPerGiB: speed.promptSecondsPerGiB } : {}),
        devices: planDevicesOf(devices, (device, offer) => this.budgetOf(a, offer, device)),
        accelerator: servesAccelerator(a.devices),
        hopSeconds: this.hopCost(a.peerId, this.o.now()),
        isHost: a.peerId === self.peerId
      })
    }
    const modelRef = self.models[0]
    // The loop asks every 250 ms; the subset search runs again only when its inputs changed.
    const key = JSON.stringify([nodes, modelRef?.id, this.o.contextSize])
    if (this.lastPlan?.key !== key) {
      const plan = makePlan({
        model: {
          ...info,
          name: modelRef?.name ?? info.name ?? 'model',
          id: modelRef?.id ?? '',
          kvBytesPerTokenPerLayer: kvBytesPerToken(info, this.o.cacheTypes),
          kvBytesPerTokenByLayer: kvBytesPerTokenByLayer(info, this.o.cacheTypes)
        },
        nodes,
        ...(this.o.contextSize !== undefined ? { contextSize: this.o.contextSize } : {})
      })
      this.lastPlan = { key, plan }
    }
    return { plan: this.lastPlan.plan, excluded, usable: nodes.map((n) => n.peerId) }
  }

  /**
   * The plan this coordinator wants now, made of `live` (alive members), and the nodes still there (a
   * serving plan may keep suspect ones); undefined when it cannot plan (the reason goes to status).
   */
  private async desiredPlan(
    live: readonly Announcement[],
    term: number
  ): Promise<{ plan: Plan; serving: ServingPlan; stillThere: ReadonlySet<string> } | undefined> {
    if (this.o.modelPath === undefined) return undefined
    if (this.unloadable !== undefined) {
      this.problem = this.unloadable
      return undefined
    }
    this.modelInfo ??= await readModelInfo(this.o.modelPath)
    let desired: Plan
    let usable: Set<string>
    try {
      const computed = await this.computePlan(live, term, false)
      desired = computed.plan
      usable = new Set(computed.usable)
      this.excluded = computed.excluded
      this.problem = null
    } catch (err) {
      this.problem = (err as Error).message
      if (this.loggedProblem !== this.problem) this.o.logger.warn({ reason: this.problem }, 'cannot plan')
      this.loggedProblem = this.problem
      return undefined
    }
    const waiting = this.shapeWait(live, term)
    if (waiting !== null) {
      this.problem = waiting
      if (this.loggedProblem !== waiting) this.o.logger.info({ reason: waiting }, 'the first plan waits')
      this.loggedProblem = waiting
      return undefined
    }
    // Members not yet gone (suspect ones too) whose last word says their rpc-server is fine may keep their
    // place in the serving plan.
    const self = this.o.mesh.announcement()
    const stillThere = new Set([
      ...usable,
      ...this.o.mesh
        .members()
        .filter((m) => exclusionReason(m.announcement, self, term) === null)
        .map((m) => m.announcement.peerId)
    ])
    return {
      plan: desired,
      serving: {
        signature: signatureOf(desired),
        predictedSecondsPerToken: desired.predictedSecondsPerToken,
        nodes: desired.nodes.map((n) => n.peerId)
      },
      stillThere
    }
  }

  /**
   * A cluster's first plan (none running, none seen, none started here) waits, up to shapeWaitMs, until
   * every node it could use has measured its speed in the model's shape (they do so once they know the
   * model and no plan uses their rpc-server): a plan priced with the small generic models is off by up to
   * 1.7x, and once it runs, its nodes cannot be measured again without stopping it. A take-over never
   * waits (serving comes first). Returns what it waits for, or null.
   */
  private shapeWait(live: readonly Announcement[], term: number): string | null {
    if (this.running !== undefined || this.generation > 0 || this.seenPlan !== undefined || this.pricedWith !== null) return null
    const self = this.o.mesh.announcement()
    const shape = self.models[0]?.shape
    if (shape === undefined) return null
    const key = calibrationKeyOf(shape)
    if (key === null) return null
    const now = this.o.now()
    this.shapeWaitSince ??= now
    if (now - this.shapeWaitSince >= this.o.timings.shapeWaitMs) return null
    const needed = live.filter((a) => exclusionReason(a, self, term) === null && needsModelSpeed(shape, a))
    // a bare rpc-server (--rpc-backend) or an external one (--rpc-endpoint) is measured with the generic
    // models only: the plan will be priced with those, and waiting would gain nothing
    if (needed.some((a) => isStaticPeer(a.peerId) || a.rpc.state === 'external')) return null
    const missing = needed.filter((a) => a.modelSpeed?.shape !== key)
    if (missing.length === 0) return null
    return `waiting for ${missing.length} node(s) to measure their speed in the model's shape (${key}), at most ${Math.round(this.o.timings.shapeWaitMs / 1000)} s`
  }

  /**
   * Liveness runs beside the loop: a check takes up to the liveness timeout (6 s on a LAN), and awaiting it
   * in the loop would stall elections and fencing meanwhile. Its result goes into `rs` for the next decision.
   */
  private checkLiveness(running: Running): void {
    running.llama
      .checkLiveness()
      .then(
        (ok) => {
          if (this.running !== running) return
          const failures = ok ? 0 : this.rs.liveness.failures + 1
          this.rs = { ...this.rs, liveness: { ...this.rs.liveness, failures } }
          if (!ok) {
            this.o.logger.warn({ failures }, 'llama-server failed its liveness check')
            void this.tick()
          }
        },
        () => {}
      )
      .finally(() => {
        this.rs = { ...this.rs, liveness: { ...this.rs.liveness, inFlight: false } }
      })
  }

  private async waitForIdle(url: string): Promise<void> {
    const deadline = Date.now() + this.o.timings.idleWaitMs
    while (Date.now() < deadline) {
      try {
        const slots = (await (await fetch(`${url}/slots`, { signal: AbortSignal.timeout(2000) })).json()) as Array<{
          is_processing?: boolean
        }>
        if (!slots.some((s) => s.is_processing === true)) return
      } catch {
        return // not answering: nothing to protect
      }
      await new Promise((resolve) => setTimeout(resolve, 200))
    }
    this.o.logger.warn({ waitedMs: this.o.timings.idleWaitMs }, 'requests still running; re-planning anyway')
  }

  private async restart(desired: Plan, signature: string, term: number): Promise<void> {
    const log = this.o.logger
    const previous = this.running
    if (previous !== undefined) {
      const grew = desired.rpc.length > previous.plan.rpc.length && previous.plan.rpc.every((e) => desired.rpc.includes(e))
      if (grew && previous.llama.state.kind === 'ready') await this.waitForIdle(previous.llama.url)
      await this.stopServer('re-planning')
    }
    if (this.stopped || this.election.currentTerm !== term || this.role !== 'coordinator') return
    this.stats.causes[this.cause] = (this.stats.causes[this.cause] ?? 0) + 1
    this.cause = 'cluster changed'
    this.generation++
    const url = `http://${this.o.serverHost}:${this.o.serverPort}`
    this.planView = this.toPlanView(desired, term, url, 'loading', null, null)
    this.o.mesh.announceNow()
    log.info(
      {
        term,
        generation: this.generation,
        rpc: desired.rpc,
        layers: desired.nodes.map((n) => n.layers),
        predictedTokensPerSecond: Math.round(desired.predictedTokensPerSecond)
      },
      'starting llama-server with a new plan'
    )
    const llama = new LlamaServerSupervisor({
      binary: this.o.binaries.llamaServer,
      model: this.o.modelPath ?? '',
      rpc: desired.rpc,
      tensorSplit: desired.tensorSplit,
      // the planned RPC devices only: a GPU of this machine is used through our own rpc-server
      devices: rpcDeviceNames(desired.tensorSplit.length),
      gpuLayers: 'all',
      contextSize: desired.contextSize,
      ...(this.o.cacheTypes !== undefined ? { cacheTypes: this.o.cacheTypes } : {}),
      host: this.o.serverBind,
      port: this.o.serverPort,
      threads: this.o.threads,
      ...(this.o.apiToken !== undefined ? { apiKey: this.o.apiToken } : {}),
      timings: this.o.supervisorTimings,
      logger: log
    })
    const running: Running = {
      startedAt: this.o.now(),
      signature,
      plan: desired,
      llama,
      predictedSecondsPerToken: desired.predictedSecondsPerToken
    }
    this.lastStartedPeers = new Set(desired.nodes.map((n) => n.peerId))
    this.running = running
    llama.on('exit', (kind) => {
      if (this.running !== running) return
      this.running = undefined
      if (kind === 'stopped') return
      this.cause = kind
      this.failures++
      this.rs = {
        ...this.rs,
        nextStartAt: this.o.now() + startBackoffMs(this.failures, this.o.timings.restartBackoffMs),
        desiredSignature: ''
      }
      const detail =
        kind === 'rpc-peer-lost' ? 'an rpc-server was lost (llama-server aborted); re-planning without it' : `llama-server exited (${kind})`
      log.warn({ kind, generation: this.generation }, detail)
      if (this.planView !== null) this.planView = { ...this.planView, server: { ...this.planView.server, state: 'failed', detail } }
      this.o.mesh.announceNow()
    })
    try {
      await llama.start()
    } catch (err) {
      if (this.running === running) this.running = undefined
      this.failures++
      this.rs = {
        ...this.rs,
        nextStartAt: this.o.now() + startBackoffMs(this.failures, this.o.timings.restartBackoffMs),
        desiredSignature: ''
      }
      // A file this llama.cpp can never load: no plan will mend it, so it is not tried again.
      const unloadable = unloadableModel(llama.recentOutput(200))
      if (unloadable !== undefined) {
        this.unloadable = `${unloadable}; not serving ${this.o.modelPath ?? 'the model'}, serving as a worker only`
        this.planView = null
        log.error({ model: this.o.modelPath }, this.unloadable)
        this.o.onModelUnloadable?.(this.unloadable)
        this.o.mesh.announceNow()
        return
      }
      // Out of memory somewhere: plan that node smaller (never the same failing plan again), after the backoff.
      const cuts = this.cutBudgets(desired, llama.recentOutput(200))
      const detail = cuts.length > 0 ? `${(err as Error).message}; re-planning: ${cuts.join('; ')}` : (err as Error).message
      this.planView = this.toPlanView(desired, term, url, 'failed', detail, null)
      this.o.mesh.announceNow()
      log.error({ err: (err as Error).message, budgetCuts: cuts }, 'llama-server did not start')
      return
    }
    this.failures = 0
    const actual = layerRanges(layerEndpoints(llama.loadReport()))
    const mismatch = this.compare(desired, actual)
    if (mismatch !== null) log.warn({ mismatch }, 'llama-server placed layers differently from the plan')
    this.planView = this.toPlanView(desired, term, url, 'ready', null, actual, mismatch)
    this.o.mesh.announceNow()
    if (llama.state.kind === 'ready') this.lastLoadMs = llama.state.loadMs
    log.info({ url, loadMs: llama.state.kind === 'ready' ? llama.state.loadMs : undefined }, 'serving')
    // the prediction next to a measurement: one short decode, beside the loop (never awaited by a decision)
    const generation = this.generation
    void llama.measureDecode().then((tokensPerSecond) => {
      const view = this.planView
      if (tokensPerSecond === undefined || view === null || view.generation !== generation || view.server.state !== 'ready') return
      this.planView = { ...view, measuredTokensPerSecond: tokensPerSecond }
      log.info(
        { predicted: Number(desired.predictedTokensPerSecond.toFixed(1)), measured: Number(tokensPerSecond.toFixed(1)) },
        'decode speed: predicted and measured'
      )
      this.o.mesh.announceNow()
    })
  }

  private compare(desired: Plan, actual: ReadonlyArray<{ endpoint: string; first: number; last: number }>): string | null {
    const layerCount = this.modelInfo?.layerCount ?? 0
    for (const node of desired.nodes) {
      const got = actual
        .filter((r) => r.endpoint === stageKey(node.rpc, node.deviceIndex))
        .map((r) => [r.first, Math.min(r.last, layerCount - 1)] as const)
        .filter(([f, l]) => f <= l)
      const want = node.layers
      const same = want === null ? got.length === 0 : got.length === 1 && got[0]?.[0] === want[0] && got[0]?.[1] === want[1]
      if (!same)
        return `${node.hostname ?? node.peerId}${node.device === null ? '' : ` ${node.device}`}: planned ${want === null ? 'none' : want.join('-')}, llama-server placed ${got.map((g) => g.join('-')).join(',') || 'none'}`
    }
    return null
  }

  private toPlanView(
    p: Plan,
    term: number,
    url: string,
    state: PlanView['server']['state'],
    detail: string | null,
    actual: ReadonlyArray<{ endpoint: string; first: number; last: number }> | null,
    mismatch: string | null = null
  ): PlanView {
    const layerCount = this.modelInfo?.layerCount ?? 0
    return {
      term,
      generation: this.generation,
      model: p.model,
      server: { url, state, detail, auth: this.o.apiToken !== undefined ? 'token' : 'none' },
      contextSize: p.contextSize,
      tensorSplit: [...p.tensorSplit],
      assignments: p.nodes.map((n) => {
        const got =
          actual
            ?.filter((r) => r.endpoint === stageKey(n.rpc, n.deviceIndex) && r.first < layerCount)
            .map((r) => [r.first, Math.min(r.last, layerCount - 1)] as [number, number]) ?? []
        return {
          peerId: n.peerId,
          rpc: this.announcedEndpoint.get(n.rpc) ?? n.rpc,
          device: n.device,
          layers: n.layers === null ? null : [n.layers[0], n.layers[1]],
          actualLayers: got[0] ?? null,
          output: n.output,
          memoryBytes: n.memory.total
        }
      }),
      mismatch,
      predictedTokensPerSecond: p.predictedTokensPerSecond,
      predictedPromptTokensPerSecond: p.predictedPromptTokensPerSecond,
      pricedWith: this.pricedWith,
      excluded: [
        ...this.excluded,
        ...p.unused.map((u) => ({ peerId: u.peerId, ...(u.device !== undefined ? { device: u.device } : {}), reason: u.why }))
      ],
      budgetCuts: [...this.budgetCuts].map(([key, cut]) => ({
        peerId: cut.peerId,
        ...(key !== cut.peerId ? { device: key.slice(cut.peerId.length + 1) } : {}),
        budget: cut.budget,
        reason: cut.reason
      })),
      createdAt: new Date().toISOString()
    }
  }

  private async stopServer(reason: string): Promise<void> {
    const running = this.running
    if (running === undefined) return
    this.running = undefined
    this.o.logger.info({ reason }, 'stopping llama-server')
    await running.llama.stop()
    if (this.planView !== null) this.planView = { ...this.planView, server: { ...this.planView.server, state: 'stopped', detail: reason } }
  }
}
