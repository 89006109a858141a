/**
 * The JSON every agent answers "what does the cluster look like" with (HTTP `/v1/cluster`, the libp2p
 * state protocol, `sollol-agent status --json`). Names are a contract: later versions only add fields.
 * Memory in bytes, times as ISO strings.
 */
import type { Announcement, IncompatiblePeer, PlanView, RpcCacheView, RpcLoadView } from './announcement.js'
import type { Member, MemberStatus } from './membership.js'
import { staticAnnouncements } from './static-backends.js'

export interface NodeView {
  readonly peerId: string
  readonly hostname: string
  /** `static`: a bare rpc-server (no agent) a model holder speaks for (`--rpc-backend`). */
  readonly status: MemberStatus | 'self' | 'static'
  readonly addresses: readonly string[]
  readonly agentVersion: string
  readonly rpc: {
    readonly host: string
    readonly port: number
    readonly protocol: string | null
    readonly state: string
    readonly llamaBuild: string
    readonly servingTerm: number
    readonly access: 'gated' | 'tunnel' | 'direct'
    readonly load?: RpcLoadView | null
    readonly cache?: RpcCacheView | null
  }
  readonly devices: Announcement['devices']
  readonly memoryBudget: number
  readonly cpuThreads: number
  readonly models: Announcement['models']
  readonly canCoordinate: boolean
  readonly apiPort: number | null
  readonly speed: Announcement['speed']
  /** Its speed measured in the shape of the cluster's model (absent: not measured in it). */
  readonly modelSpeed?: Announcement['modelSpeed']
  /** The layers this node holds in the current plan: inclusive range, null for none; output layer too. */
  readonly layers: readonly [number, number] | null
  readonly output: boolean
  /** Per device, when the plan uses the node's rpc-server devices apart (a GPU and its CPU). */
  readonly deviceLayers?: ReadonlyArray<{
    readonly device: string
    readonly layers: readonly [number, number] | null
    readonly output: boolean
  }>
  readonly lastSeen: string
}

export interface DiscoveryView {
  /** `ok`, or why this agent cannot find peers by itself (then `--bootstrap` is the way). */
  readonly mdns: 'ok' | 'unavailable' | 'disabled'
  readonly reason: string | null
  readonly listen: readonly string[]
  /** True when the mesh is private (a cluster key): only agents with the key can connect. */
  readonly closed?: boolean
  /** Open libp2p connections and distinct peers behind them (one connection per peer is the aim). */
  readonly connections?: number
  readonly connectedPeers?: number
  /** The members this agent beats and watches (its ring neighbours, liveness.ts), by peer id. */
  readonly watching?: readonly string[]
}

export interface ClusterView {
  readonly cluster: string
  readonly self: string
  readonly nodes: readonly NodeView[]
  readonly coordinator: null | { readonly peerId: string; readonly term: number }
  readonly plan: null | PlanView
  /**
   * Weights the current plan's load sent over the LAN: the sum of the last relayed load of every node in
   * the plan (the coordinator's own rpc-server is reached over loopback and sends nothing over the LAN).
   * Null without a plan.
   */
  readonly weightsOverLan?: null | { readonly bytes: number; readonly tensorsFromCache: number; readonly done: boolean }
  /**
   * Agents of this cluster that speak another version of the announcements: never planned with, shown so
   * that the user upgrades one side (a rolling upgrade that went wrong is visible, not a silent split).
   */
  readonly incompatible?: ReadonlyArray<IncompatiblePeer & { readonly reason: string }>
  /** Why the cluster is not serving, when it is not (no model holder, planning failed...). */
  readonly problem?: string | null
  readonly discovery: DiscoveryView
  /** What this agent received and dropped (hostile or malformed input is counted, never applied). */
  readonly counters?: {
    readonly announcementsIn: number
    readonly announcementsOut: number
    readonly dropped: number
    readonly dropReasons: Readonly<Record<string, number>>
    readonly tunnelsOpened: number
    readonly tunnelsRefused: number
    readonly connectionsOpened?: number
    readonly heartbeatsIn?: number
    readonly heartbeatsOut?: number
    /** Announcements asked of their owner over hello (a new connection, or a heartbeat naming one this agent lacked). */
    readonly announcementsFetched?: number
    /** Introductions asked of a new connection's peer, and strangers they named that this agent dialled. */
    readonly introductionsFetched?: number
    readonly introducedDials?: number
    /** Liveness reports about watched members sent, received, and acted on; reports about us refuted. */
    readonly livenessReportsOut?: number
    readonly livenessReportsIn?: number
    readonly livenessReportsTaken?: number
    readonly refutations?: number
  }
  readonly generatedAt: string
}

function nodeView(a: Announcement, status: NodeView['status'], lastSeen: number, plan: PlanView | null): NodeView {
  // one assignment per device the plan uses on this node: the node holds their union
  const own = plan?.assignments.filter((x) => x.peerId === a.peerId) ?? []
  const ranges = own.flatMap((x) => (x.layers === null ? [] : [x.layers]))
  const layers: [number, number] | null =
    ranges.length === 0 ? null : [Math.min(...ranges.map((r) => r[0])), Math.max(...ranges.map((r) => r[1]))]
  const perDevice = own.filter((x) => typeof x.device === 'string')
  return {
    peerId: a.peerId,
    hostname: a.hostname,
    status,
    addresses: a.addresses,
    agentVersion: a.agentVersion,
    rpc: { ...a.rpc },
    devices: a.devices,
    memoryBudget: a.memoryBudget,
    cpuThreads: a.cpuThreads,
    models: a.models,
    canCoordinate: a.canCoordinate,
    apiPort: a.apiPort,
    speed: a.speed,
    ...(a.modelSpeed !== undefined && a.modelSpeed !== null ? { modelSpeed: a.modelSpeed } : {}),
    layers,
    output: own.some((x) => x.output),
    ...(perDevice.length > 0
      ? { deviceLayers: perDevice.map((x) => ({ device: x.device ?? '', layers: x.layers, output: x.output })) }
      : {}),
    lastSeen: new Date(lastSeen).toISOString()
  }
}

/** Pure: what the plan's nodes report of their last relayed load, summed. */
export function weightsOverLan(
  plan: PlanView | null,
  nodes: readonly NodeView[],
  coordinator: string | undefined
): ClusterView['weightsOverLan'] {
  if (plan === null) return null
  let [bytes, tensorsFromCache, done] = [0, 0, true]
  // The coordinator's own rpc-server is reached over loopback; a load it relayed was from an earlier term.
  // a node with several devices in the plan has one assignment per device, and one load
  const peers = plan.assignments.filter((a, i, all) => a.peerId !== coordinator && all.findIndex((b) => b.peerId === a.peerId) === i)
  for (const assignment of peers) {
    const load = nodes.find((n) => n.peerId === assignment.peerId)?.rpc.load
    if (load === undefined || load === null) continue
    bytes += load.weightBytes
    tensorsFromCache += load.tensorsFromCache
    done &&= load.done
  }
  return { bytes, tensorsFromCache, done }
}

export function clusterView(
  self: Announcement,
  members: ReadonlyArray<Member & { status: MemberStatus }>,
  discovery: DiscoveryView,
  now: number,
  /** Wall-clock time for the ISO strings; the membership clock may be monotonic. */
  wallNow: number = now,
  coordination: CoordinationPart = NO_COORDINATION
): ClusterView {
  const { plan } = coordination
  const toWall = (t: number): number => wallNow - (now - t)
  const agents = [
    nodeView(self, 'self', wallNow, plan),
    ...members.map((m) => nodeView(m.announcement, m.status, toWall(m.lastHeard), plan))
  ]
  // bare rpc-servers the agents speak for (--rpc-backend), after the agents
  const statics = staticAnnouncements([self, ...members.map((m) => m.announcement)]).map((a) => nodeView(a, 'static', wallNow, plan))
  const nodes = [...agents, ...statics]
  return {
    cluster: self.cluster,
    self: self.peerId,
    nodes,
    coordinator: coordination.coordinator,
    plan,
    weightsOverLan: weightsOverLan(plan, nodes, coordination.coordinator?.peerId),
    problem: coordination.problem,
    discovery,
    generatedAt: new Date(wallNow).toISOString()
  }
}

/** What the coordination layer adds to the view: coordinator, plan, and why the cluster does not serve. */
export interface CoordinationPart {
  readonly coordinator: ClusterView['coordinator']
  readonly plan: PlanView | null
  readonly problem: string | null
}

/** Before coordination says anything (or without it: the mesh's own view). */
export const NO_COORDINATION: CoordinationPart = { coordinator: null, plan: null, problem: null }

/** What the mesh knows at one moment (Mesh.snapshot()): the facts the cluster view is made of. */
export interface MeshSnapshot {
  readonly self: Announcement
  readonly members: ReadonlyArray<Member & { status: MemberStatus }>
  readonly discovery: DiscoveryView
  readonly incompatible: NonNullable<ClusterView['incompatible']>
  readonly counters: NonNullable<ClusterView['counters']>
  /** The membership clock (may be monotonic) and the wall clock, at the snapshot. */
  readonly now: number
  readonly wallNow: number
}

/**
 * The cluster view, built in one place: from the mesh's snapshot and what coordination adds. The HTTP API,
 * `status`, the dashboard, the metrics and the mesh's state protocol all serve this. Pure.
 */
export function clusterViewOf(snapshot: MeshSnapshot, coordination?: CoordinationPart): ClusterView {
  const view = clusterView(snapshot.self, snapshot.members, snapshot.discovery, snapshot.now, snapshot.wallNow, coordination)
  return { ...view, incompatible: snapshot.incompatible, counters: snapshot.counters }
}
