/**
 * The agent's place in the mesh: gossips this agent's announcement, beats its ring neighbours, keeps the
 * membership view, reports and refutes liveness. Its parts: `dialer.ts` (one connection to every peer it
 * knows of), `heartbeat-service.ts` (the beat streams), `hello-service.ts` (hello and state: an announcement
 * or the view asked of a peer), `tunnel-service.ts` (TCP over the mesh), `node.ts` (the libp2p node).
 * Membership rules live in @sollol/core; this class only feeds them facts and decides what to send.
 */
import { EventEmitter } from 'node:events'
import { connect } from 'node:net'
import { hostname } from 'node:os'
import { performance } from 'node:perf_hooks'
import type { Connection } from '@libp2p/interface'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import {
  announceRefreshDueMs,
  ANNOUNCEMENT_VERSION,
  clusterViewOf,
  encodeAnnouncement,
  encodeIntroductions,
  encodeLivenessReport,
  Membership,
  parseLivenessReport,
  RING_PER_SIDE,
  parseAnnouncement,
  parseIntroductions,
  strangersToDial,
  type Announcement,
  type Introduction,
  type DiscoveryView,
  type IncompatiblePeer,
  type MeshTimings,
  type MembershipEvent,
  type MeshSnapshot,
  type LivenessReport,
  WIRE_RANGE
} from '@sollol/core'
import { Dialer } from './dialer.js'
import { encodeBeat } from './heartbeat.js'
import { HeartbeatService } from './heartbeat-service.js'
import { HelloService } from './hello-service.js'
import { createMeshNode, type MeshNode, type MeshTransport } from './node.js'
import { mdnsAvailability } from './network-environment.js'
import { announceTopic, helloProtocol, livenessTopic } from './protocols.js'
import { TunnelService, type TunnelTap } from './tunnel-service.js'
import type { PrivateKey } from '@libp2p/interface'

/** What the agent says about itself; the mesh adds identity, ordering and addresses. */
export type SelfDescription = Omit<
  Announcement,
  'v' | 'cluster' | 'peerId' | 'incarnation' | 'seq' | 'addresses' | 'hostname' | 'heartbeats'
> & {
  hostname?: string
}

/** The kind of a drop reason: its words before the first ':' or ' at ' (`invalid at rpc.port: ...` -> `invalid`). */
export function dropKind(reason: string): string {
  return (reason.split(':')[0] ?? reason).replace(/ at .*$/, '').slice(0, 40)
}

/** How long a peer speaking another version stays in the view after its last message. */
const INCOMPATIBLE_SHOWN_MS = 60_000

export interface MeshLogger {
  debug: (fields: Record<string, unknown>, message: string) => void
  info: (fields: Record<string, unknown>, message: string) => void
  warn: (fields: Record<string, unknown>, message: string) => void
}

export interface MeshOptions {
  readonly cluster: string
  readonly privateKey: PrivateKey
  /** Orders this run's announcements after the previous run's (persisted: see nextPersistedIncarnation); default the clock. */
  readonly incarnation?: number
  /** `tcp` (default): the LAN; `memory`: nodes of this process only (in-process tests). */
  readonly transport?: MeshTransport
  readonly listenHost?: string
  readonly port: number
  /** Multiaddrs (with /p2p/ id or without) dialled at start and whenever not connected. */
  readonly bootstrap?: readonly string[]
  /** false: no mDNS at all (bootstrap only). */
  readonly mdns?: boolean
  readonly announceLoopback?: boolean
  /** Cluster key (private network); without it the cluster is open to anyone on the LAN. */
  readonly clusterKey?: Uint8Array
  readonly timings: MeshTimings
  readonly logger: MeshLogger
  readonly describeSelf: () => SelfDescription
  /**
   * The bytes the state protocol serves (the agent's cluster view, JSON): the mesh moves them and never
   * reads them. Absent: the view of the mesh alone (clusterViewOf without coordination).
   */
  readonly state?: () => Uint8Array
  /** Monotonic clock for membership (ms). Injected so tests can drive it. */
  readonly now?: () => number
}

export interface MeshCounters {
  announcementsIn: number
  announcementsOut: number
  dropped: number
  dropReasons: Record<string, number>
  tunnelsOpened: number
  /** Tunnel streams refused because the peer was not admitted (not the coordinator of the term). */
  tunnelsRefused: number
  /** libp2p connections opened (both directions): flat at rest, else connections churn. */
  connectionsOpened: number
  heartbeatsIn: number
  heartbeatsOut: number
  /** Announcements asked of their owner over hello (a new connection, or a heartbeat naming one we lacked). */
  announcementsFetched: number
  /** Introductions asked of a new connection's peer, and strangers they named that were dialled (once each). */
  introductionsFetched: number
  introducedDials: number
  /** Liveness reports sent about the members we watch, and received (taken: acted on) from their watchers. */
  livenessReportsOut: number
  livenessReportsIn: number
  livenessReportsTaken: number
  /** Reports that said we were not alive, answered by announcing again. */
  refutations: number
}

export interface MeshEvents {
  membership: [MembershipEvent]
  /** A newer announcement of a peer was applied (the election reads claims from these). */
  announcement: [Announcement]
  /**
   * The membership clock ticked (every 250 ms at most): the time-based decisions of the layers above run on
   * it, so that an idle agent wakes once per tick, not once per layer.
   */
  tick: []
}

const monotonic = (): number => performance.timeOrigin + performance.now()

/** Peers a message we publish on `topic` goes to (gossipsub has the method; its interface type lacks it). */
function meshPeerCount(node: MeshNode, topic: string): number {
  return (node.services.pubsub as unknown as { getMeshPeers: (topic: string) => string[] }).getMeshPeers(topic).length
}

export class Mesh extends EventEmitter<MeshEvents> {
  private node: MeshNode | undefined
  private readonly membership: Membership
  private readonly now: () => number
  private readonly incarnation: number
  private seq = 0
  private latest: Announcement | undefined
  private publishedAt = 0
  /** How long after `publishedAt` the slow refresh is due (drawn at each publish: announceRefreshDueMs). */
  private refreshDueMs = 0
  /** A member joined since the last announcement: gossip ours again, so peers it reaches learn of us. */
  private joinedSinceAnnounce = false
  /**
   * Our announcement has gone out with a gossipsub mesh peer to take it (our own start is over): from
   * then on a member's join no longer asks for it again (see emitEvents).
   */
  private announcedToMesh = false
  /** The announcement a join asked for, due soon (announceSoon). */
  private soon: NodeJS.Timeout | undefined
  private timers: NodeJS.Timeout[] = []
  private discovery: DiscoveryView = { mdns: 'disabled', reason: null, listen: [] }
  /** Peers of this cluster whose announcements this release cannot read (another major version), by peer id. */
  private readonly incompatible = new Map<string, IncompatiblePeer & { heardAt: number }>()
  readonly counters: MeshCounters = {
    announcementsIn: 0,
    announcementsOut: 0,
    dropped: 0,
    dropReasons: {},
    tunnelsOpened: 0,
    tunnelsRefused: 0,
    connectionsOpened: 0,
    heartbeatsIn: 0,
    heartbeatsOut: 0,
    announcementsFetched: 0,
    introductionsFetched: 0,
    introducedDials: 0,
    livenessReportsOut: 0,
    livenessReportsIn: 0,
    livenessReportsTaken: 0,
    refutations: 0
  }
  private readonly dialer: Dialer
  private readonly heartbeats: HeartbeatService
  private readonly hello: HelloService
  private readonly tunnels: TunnelService
  readonly peerId: string

  constructor(private readonly options: MeshOptions) {
    super()
    this.now = options.now ?? monotonic
    this.peerId = peerIdFromPrivateKey(options.privateKey).toString()
    this.membership = new Membership(options.cluster, this.peerId, options.timings)
    this.incarnation = options.incarnation ?? Date.now()
    const node = (): MeshNode | undefined => this.node
    this.dialer = new Dialer({
      selfId: this.peerId,
      node,
      bootstrap: options.bootstrap ?? [],
      redialIntervalMs: options.timings.redialIntervalMs,
      now: this.now,
      logger: options.logger
    })
    this.heartbeats = new HeartbeatService({
      cluster: options.cluster,
      node,
      intervalMs: options.timings.announceIntervalMs,
      now: this.now,
      counters: this.counters,
      logger: options.logger,
      ourBeat: () => (this.latest === undefined ? undefined : encodeBeat(this.incarnation, this.latest.seq)),
      onBeat: (peer, beat) => {
        const id = peer.toString()
        const { behind, events } = this.membership.onHeartbeat(id, beat, this.now())
        // heard from: its addresses stay worth redialling (announcements alone now come only on change)
        this.dialer.heard(id)
        this.emitEvents(events)
        if (behind) this.hello.fetch(peer)
      }
    })
    this.hello = new HelloService({
      cluster: options.cluster,
      node,
      counters: this.counters,
      logger: options.logger,
      announcement: () => encodeAnnouncement(this.announcement()),
      state: () => options.state?.() ?? new TextEncoder().encode(JSON.stringify(clusterViewOf(this.snapshot()))),
      received: (data, from) => this.receive(data, from),
      introductions: () => encodeIntroductions(this.introductions()),
      introduced: (data, from) => this.receiveIntroductions(data, from),
      stillWanted: (peer) =>
        this.membership.get(peer.toString()) === undefined && (this.node?.getConnections(peer).some((c) => c.status === 'open') ?? false)
    })
    this.tunnels = new TunnelService({ cluster: options.cluster, node, counters: this.counters, logger: options.logger })
  }

  get running(): boolean {
    return this.node !== undefined
  }

  async start(): Promise<void> {
    if (this.node !== undefined) return
    const o = this.options
    // mDNS finds hosts on the LAN: nothing to find for in-memory nodes
    const wantMdns = o.mdns !== false && o.transport !== 'memory'
    const availability = wantMdns ? mdnsAvailability() : undefined
    const node = await createMeshNode({
      privateKey: o.privateKey,
      cluster: o.cluster,
      transport: o.transport ?? 'tcp',
      listenHost: o.listenHost ?? '0.0.0.0',
      port: o.port,
      mdns: wantMdns,
      announceLoopback: o.announceLoopback ?? false,
      timings: o.timings,
      ...(o.clusterKey !== undefined ? { clusterKey: o.clusterKey } : {})
    })
    this.node = node
    this.dialer.start()
    if (!wantMdns) this.discovery = { mdns: 'disabled', reason: 'disabled by configuration', listen: [] }
    else if (availability?.ok === false) {
      this.discovery = { mdns: 'unavailable', reason: availability.reason, listen: [] }
      o.logger.warn(
        { reason: availability.reason },
        'mDNS discovery cannot work here: peers will not be found automatically; use --bootstrap <multiaddr>'
      )
    } else this.discovery = { mdns: 'ok', reason: null, listen: [] }

    node.addEventListener('peer:discovery', (evt) => {
      if (evt.detail.id.toString() === this.peerId) return
      this.dialer.found(evt.detail.id, evt.detail.multiaddrs)
    })
    node.addEventListener('connection:open', (evt) => {
      this.onConnectionOpen(evt.detail)
    })
    node.addEventListener('connection:close', (evt) => {
      this.onConnectionClose(evt.detail)
    })
    node.addEventListener('peer:identify', (evt) => {
      // An agent of another cluster (it speaks another cluster's hello) is not kept. Peers with no sollol
      // protocol at all, such as `sollol-agent status`, may stay: they can only ask for the state.
      const ours = helloProtocol(o.cluster)
      if (evt.detail.protocols.some((p) => /^\/sollol\/[^/]+\/hello\//.test(p) && p !== ours)) {
        o.logger.debug({ peer: evt.detail.peerId.toString() }, 'hanging up on a peer of another cluster')
        void node.hangUp(evt.detail.peerId).catch(() => {})
      }
    })

    await this.hello.serve()
    await this.heartbeats.serve()

    const pubsub = node.services.pubsub
    pubsub.subscribe(announceTopic(o.cluster))
    pubsub.subscribe(livenessTopic(o.cluster))
    pubsub.addEventListener('gossipsub:heartbeat', () => {
      if (this.joinedSinceAnnounce) this.announceSoon()
    })
    pubsub.addEventListener('subscription-change', (evt) => {
      // a join's announcement waited for someone to gossip it to (announceSoon)
      if (this.joinedSinceAnnounce && evt.detail.subscriptions.some((s) => s.subscribe && s.topic === announceTopic(o.cluster)))
        this.announceSoon()
    })
    pubsub.addEventListener('message', (evt) => {
      const message = evt.detail
      const from = message.type === 'signed' ? message.from.toString() : undefined
      if (message.topic === announceTopic(o.cluster)) this.receive(message.data, from)
      else if (message.topic === livenessTopic(o.cluster)) this.receiveReport(message.data, from)
    })

    this.discovery = { ...this.discovery, listen: node.getMultiaddrs().map(String) }
    o.logger.info({ peerId: this.peerId, listen: this.discovery.listen, cluster: o.cluster }, 'mesh started')
    this.publish(true)
    const t = o.timings
    this.timers.push(
      setInterval(() => {
        this.publish(this.joinedSinceAnnounce || this.now() - this.publishedAt >= this.refreshDueMs)
        this.beat()
      }, t.announceIntervalMs)
    )
    const tickMs = Math.min(250, t.disconnectGoneMs / 2)
    let lastTick = this.now()
    this.timers.push(
      setInterval(() => {
        const now = this.now()
        // this timer did not run for the suspicion window: we were stopped, not the members we watch
        if (now - lastTick >= t.silenceSuspectMs) {
          o.logger.warn(
            { stalledMs: Math.round(now - lastTick) },
            'this agent did not run for a while: giving the peers it watches a fresh window'
          )
          this.membership.afterStall(now)
        }
        lastTick = now
        this.emitEvents(this.membership.tick(now))
        this.emit('tick')
      }, tickMs)
    )
    this.timers.push(
      setInterval(() => {
        this.redial()
      }, t.redialIntervalMs)
    )
    this.redial()
  }

  async stop(): Promise<void> {
    for (const timer of this.timers) clearInterval(timer)
    this.timers = []
    clearTimeout(this.soon)
    this.soon = undefined
    const node = this.node
    this.node = undefined
    await node?.stop()
  }

  /** The latest announcement of this agent (rebuilt from describeSelf() when asked to announce). */
  announcement(): Announcement {
    if (this.latest === undefined) this.refreshAnnouncement()
    return this.latest as Announcement
  }

  /** Re-reads the self description and gossips it at once if it changed (call on any change). */
  announceNow(): void {
    this.publish()
  }

  /** What the mesh knows now, for the cluster view (clusterViewOf in @sollol/core builds it). */
  snapshot(): MeshSnapshot {
    const connections = this.node?.getConnections() ?? []
    const now = this.now()
    return {
      self: this.announcement(),
      members: this.membership.list(now),
      discovery: {
        ...this.discovery,
        closed: this.options.clusterKey !== undefined,
        connections: connections.length,
        connectedPeers: new Set(connections.map((c) => c.remotePeer.toString())).size,
        watching: this.membership.watched()
      },
      incompatible: [...this.incompatible.values()].map(({ heardAt: _, ...peer }) => ({ ...peer, reason: 'incompatible: upgrade' })),
      counters: { ...this.counters, dropReasons: { ...this.counters.dropReasons } },
      now,
      wallNow: Date.now()
    }
  }

  /**
   * Serves a tunnel `name`: streams from admitted peers come out as TCP connections to host:port here.
   * Others are refused and counted.
   */
  async serveTunnel(
    name: string,
    target: { host: string; port: number },
    admit: (peerId: string) => boolean,
    tap?: TunnelTap
  ): Promise<void> {
    await this.tunnels.serve(name, target, admit, tap)
  }

  /** Cuts every open tunnel stream of peers that `keep` rejects (admission changed). */
  cutTunnels(keep: (peerId: string) => boolean): number {
    return this.tunnels.cut(keep)
  }

  /** Opens the entry of peer's tunnel `name`: a TCP port on 127.0.0.1 that leads there. */
  async openTunnel(peerId: string, name: string): Promise<{ port: number; close: () => Promise<void> }> {
    return await this.tunnels.open(peerId, name)
  }

  /** IP addresses this agent's connections to `peerId` come from (Noise-authenticated as that peer). */
  peerAddresses(peerId: string): string[] {
    const node = this.node
    if (node === undefined) return []
    return node.getConnections(peerIdFromString(peerId)).flatMap((c) => {
      const match = /^\/ip[46]\/([^/]+)\//.exec(c.remoteAddr.toString())
      return match?.[1] !== undefined ? [match[1]] : []
    })
  }

  /** Live members (not self) with their status, from the membership view. */
  members(): ReturnType<Membership['list']> {
    return this.membership.list(this.now())
  }

  /** Round-trip time to a connected peer in ms (libp2p ping), undefined when it cannot be measured. */
  /**
   * The network round trip to a member, as its kernel answers it: the time a TCP connect to its mesh
   * listen address takes (SYN to SYN-ACK); the caller keeps the minimum of its samples (one connect each:
   * libp2p refuses a host's sixth new connection in a second, `inboundConnectionThreshold`). Unlike a libp2p ping it does not wait for the
   * member's event loop, which a busy agent (a model load, a calibration, a CPU quota) answers late: pings
   * of 10 ms priced each hop of a LAN of 0.1 ms, and the plan's predicted speed at a fifth of what it ran.
   * The connection is closed before a byte is sent (the member's libp2p drops it). Undefined when no TCP
   * address of it is known (an in-memory transport): use rtt() then.
   */
  async tcpRtt(peerId: string, tries = 1): Promise<number | undefined> {
    const target = this.tcpAddressOf(peerId)
    if (target === undefined) return undefined
    let best: number | undefined
    for (let i = 0; i < tries; i++) {
      const ms = await new Promise<number | undefined>((resolve) => {
        const started = performance.now()
        const socket = connect({ host: target.host, port: target.port, timeout: 2000 })
        const done = (value: number | undefined): void => {
          socket.destroy()
          resolve(value)
        }
        socket.once('connect', () => done(performance.now() - started))
        socket.once('timeout', () => done(undefined))
        socket.once('error', () => done(undefined))
      })
      if (ms !== undefined) best = Math.min(best ?? Infinity, ms)
    }
    return best
  }

  /** The member's mesh listen address on the IP it is connected from (else its first IPv4 TCP address). */
  private tcpAddressOf(peerId: string): { host: string; port: number } | undefined {
    const announced = this.membership.get(peerId)?.announcement.addresses ?? []
    const tcp = announced.flatMap((a) => {
      const match = /^\/ip4\/([\d.]+)\/tcp\/(\d+)$/.exec(a)
      return match !== null ? [{ host: match[1]!, port: Number(match[2]) }] : []
    })
    const reached = new Set(this.peerAddresses(peerId))
    return tcp.find((t) => reached.has(t.host)) ?? tcp.find((t) => !t.host.startsWith('127.')) ?? tcp[0]
  }

  async rtt(peerId: string): Promise<number | undefined> {
    const node = this.node
    if (node === undefined) return undefined
    try {
      return await node.services.ping.ping(peerIdFromString(peerId), { signal: AbortSignal.timeout(2000) })
    } catch {
      return undefined
    }
  }

  /**
   * Re-reads the self description; a new seq only when something in it changed, so that an unchanged
   * agent gossips nothing and its heartbeats keep naming the announcement every member holds.
   */
  private refreshAnnouncement(bump = false): boolean {
    const self = this.options.describeSelf()
    const next: Announcement = {
      ...self,
      v: ANNOUNCEMENT_VERSION,
      wire: { ...WIRE_RANGE },
      cluster: this.options.cluster,
      peerId: this.peerId,
      incarnation: this.incarnation,
      seq: this.seq,
      hostname: self.hostname ?? hostname(),
      // without our own /p2p/ suffix (TCP listen addresses carry it, in-memory ones do not)
      addresses: this.node?.getMultiaddrs().map((ma) => ma.toString().replace(/\/p2p\/[^/]+$/, '')) ?? [],
      heartbeats: { ring: RING_PER_SIDE }
    }
    if (!bump && this.latest !== undefined && JSON.stringify(next) === JSON.stringify(this.latest)) return false
    this.seq++
    this.latest = { ...next, seq: this.seq }
    return true
  }

  /**
   * Gossips the announcement when it changed, or always with `force` (start, the slow refresh); `bump`: with
   * a new seq even if nothing changed (a refutation: reports about the older one are then stale).
   */
  private publish(force = false, bump = false): void {
    const node = this.node
    if (node === undefined) return
    if (!this.refreshAnnouncement(bump) && !force) return
    const latest = this.latest as Announcement
    const topic = announceTopic(this.options.cluster)
    this.publishedAt = this.now()
    this.refreshDueMs = announceRefreshDueMs(this.options.timings, Math.random())
    // Published to nobody (no peer has said yet that it subscribed, as on a new connection) it is lost
    // without an error: the join that asked for it stays owed (see the subscription listener in start).
    const reached = meshPeerCount(node, topic) > 0
    this.joinedSinceAnnounce &&= !reached
    this.announcedToMesh ||= reached
    node.services.pubsub.publish(topic, encodeAnnouncement(latest)).then(
      () => {
        this.counters.announcementsOut++
      },
      (err: Error) => {
        this.options.logger.debug({ err: err.message }, 'announcement not published')
      }
    )
  }

  /**
   * A member joined: our announcement goes out now, not at the next tick (up to announceIntervalMs away):
   * the members a newcomer is not connected to yet learn of it from its first gossip, and it of them from
   * theirs. Joins in a burst (a newcomer meets every member within a second) share one announcement: at
   * most one per quarter interval. Not before a peer has subscribed: gossipsub would publish it to nobody.
   */
  private announceSoon(): void {
    const node = this.node
    if (this.soon !== undefined || node === undefined) return
    if (meshPeerCount(node, announceTopic(this.options.cluster)) === 0) return
    const wait = Math.max(0, this.publishedAt + this.options.timings.announceIntervalMs / 4 - this.now())
    this.soon = setTimeout(() => {
      this.soon = undefined
      if (this.joinedSinceAnnounce) this.publish(true)
    }, wait)
  }

  /**
   * A heartbeat to the members we watch (liveness.ts), and to peers heard from in this run that are connected
   * again but are not members (a peer back from a freeze was dropped by every side; its beat is what makes
   * the other side fetch its announcement at once).
   */
  private beat(): void {
    const targets = new Set(this.membership.watched())
    for (const id of this.dialer.knownIds()) if (this.membership.get(id) === undefined) targets.add(id)
    targets.delete(this.peerId)
    this.heartbeats.beat(targets)
  }

  private drop(reason: string, from: string | undefined): void {
    this.counters.dropped++
    // The kind only ('invalid', 'too large', 'impersonation'...): no paths or values, so the set stays small
    // (it is a Prometheus label).
    const key = dropKind(reason)
    this.counters.dropReasons[key] = (this.counters.dropReasons[key] ?? 0) + 1
    this.options.logger.debug({ from, reason }, 'announcement dropped')
  }

  /** Every inbound announcement comes through here: validated, checked against its sender, applied. */
  private receive(data: Uint8Array, from: string | undefined): void {
    const parsed = parseAnnouncement(data)
    if (!parsed.ok) {
      this.drop(parsed.reason, from)
      // Not silent: a peer speaking another version is shown, so that the user upgrades one side.
      const other = parsed.incompatible
      if (other !== undefined && other.peerId === from && other.cluster === this.options.cluster) {
        if (!this.incompatible.has(other.peerId))
          this.options.logger.warn(
            { peer: other.peerId, agentVersion: other.agentVersion, speaks: other.wire, we: WIRE_RANGE },
            'a peer speaks another version of the announcements: upgrade one side (it is left out of the cluster)'
          )
        if (this.incompatible.has(other.peerId) || this.incompatible.size < 256)
          this.incompatible.set(other.peerId, { ...other, heardAt: this.now() })
      }
      return
    }
    const a = parsed.value
    // Only a peer speaks for itself: the signed sender must be the announced peer.
    if (from === undefined || from !== a.peerId) {
      this.drop(`impersonation: ${from ?? 'unsigned'} announced ${a.peerId}`, from)
      return
    }
    // it speaks our version after all
    this.incompatible.delete(a.peerId)
    this.counters.announcementsIn++
    const { verdict, events } = this.membership.onAnnouncement(a, this.now())
    if (verdict === 'other-cluster') {
      this.drop('other-cluster', from)
      return
    }
    if (verdict === 'applied') {
      this.dialer.learned(a.peerId, a.addresses)
      const node = this.node
      if (node !== undefined && node.getConnections(peerIdFromString(a.peerId)).length > 0) {
        this.emitEvents(this.membership.onConnected(a.peerId, this.now()))
      }
    }
    this.emitEvents(events)
    if (verdict === 'applied') this.emit('announcement', a)
  }

  private emitEvents(events: MembershipEvent[]): void {
    for (const report of this.membership.takeReports()) this.sendReport(report)
    for (const event of events) {
      // Announcements travel on change only. While our own start lasts (ours has not reached a mesh peer
      // yet), a member's join sends ours again at once (announceSoon), so the peers it reaches learn of us.
      // After that a newcomer needs none of it: it asks each member it connects to for its announcement
      // (hello) and is told of the others (introductions); the previous release does both. Every member
      // re-announcing on each join was 19 announcements gossiped to the newcomer while its CPU was busy
      // with 19 handshakes (scripts/probes/join.mjs 20: the 20th in every view 3.7-4.9 s without, 3.8-6.0
      // with, same machine and hour).
      if (event.type === 'member:joined' && !this.announcedToMesh) {
        this.joinedSinceAnnounce = true
        this.announceSoon()
      }
      if (event.type !== 'member:updated')
        this.options.logger.info(
          { peer: event.peerId, ...(event.type === 'member:left' ? { reason: event.reason } : {}) },
          event.type.replace('member:', 'peer ')
        )
      this.emit('membership', event)
    }
  }

  /** Tells every member what we saw of a member we watch (liveness.ts). */
  private sendReport(report: LivenessReport): void {
    const node = this.node
    if (node === undefined) return
    this.options.logger.info({ peer: report.subject, state: report.state }, 'reporting a watched peer')
    node.services.pubsub.publish(livenessTopic(this.options.cluster), encodeLivenessReport(report)).then(
      () => {
        this.counters.livenessReportsOut++
      },
      (err: Error) => {
        this.options.logger.debug({ err: err.message }, 'liveness report not published')
      }
    )
  }

  /** A watcher's report: taken when it comes from one of the subject's watchers; about us, refuted. */
  private receiveReport(data: Uint8Array, from: string | undefined): void {
    const parsed = parseLivenessReport(data)
    if (!parsed.ok) {
      this.drop(parsed.reason, from)
      return
    }
    if (from === undefined) {
      this.drop('impersonation: an unsigned liveness report', from)
      return
    }
    this.counters.livenessReportsIn++
    const report = parsed.value
    const { taken, refute, events } = this.membership.onReport(from, report, this.now())
    if (taken) this.counters.livenessReportsTaken++
    // only a report about the announcement we last made: one newer announcement answers every watcher
    if (refute && report.incarnation === this.incarnation && report.seq === this.latest?.seq) {
      this.counters.refutations++
      this.options.logger.info({ reporter: from, state: report.state }, 'a peer reported this agent silent: announcing again')
      this.publish(true, true)
    }
    this.emitEvents(events)
  }

  private onConnectionOpen(connection: Connection): void {
    this.counters.connectionsOpened++
    const peer = connection.remotePeer
    const id = peer.toString()
    this.dialer.closeDuplicates(peer)
    this.emitEvents(this.membership.onConnected(id, this.now()))
    // Ask the new peer for its announcement directly: no waiting for the next gossip round. Once more if
    // that fails: most often this connection was a duplicate being closed (both sides dialled at once).
    this.hello.fetch(peer, 1)
    // and which members it knows: gossip reaches a newcomer only when they next announce (introductions.ts)
    this.hello.introduce(peer)
  }

  /** What introductions answers: the live members and the addresses each announced itself. */
  private introductions(): Introduction[] {
    return this.membership
      .list(this.now())
      .filter((m) => m.status !== 'suspect')
      .map((m) => ({ peerId: m.announcement.peerId, addresses: m.announcement.addresses }))
  }

  /** A peer's introductions: each member new to us dialled once; what it then says itself is what we keep. */
  private receiveIntroductions(data: Uint8Array, from: string): void {
    const parsed = parseIntroductions(data)
    if (!parsed.ok) {
      this.drop(parsed.reason, from)
      return
    }
    const node = this.node
    if (node === undefined) return
    const connected = new Set(node.getConnections().map((c) => c.remotePeer.toString()))
    const strangers = strangersToDial(
      parsed.value,
      this.peerId,
      (id) => connected.has(id) || this.membership.get(id) !== undefined || this.dialer.isKnown(id)
    )
    for (const stranger of strangers) {
      if (!this.dialer.introduced(stranger.peerId, stranger.addresses)) continue
      this.counters.introducedDials++
      this.options.logger.debug({ peer: stranger.peerId, by: from }, 'dialling an introduced member')
    }
  }

  private onConnectionClose(connection: Connection): void {
    const node = this.node
    const peer = connection.remotePeer
    if (node !== undefined && node.getConnections(peer).length > 0) {
      // a duplicate closed: gossip may have lost the stream it had on that connection
      setImmediate(() => this.dialer.repairGossip(peer))
      return
    }
    const id = peer.toString()
    this.heartbeats.forget(id)
    this.emitEvents(this.membership.onDisconnected(id, this.now()))
  }

  private redial(): void {
    const now = this.now()
    this.dialer.redial(this.membership.list(now).map((m) => m.announcement.peerId))
    // Peers of another version are shown for a minute after their last word: long enough to be seen.
    for (const [id, peer] of this.incompatible) if (now - peer.heardAt > INCOMPATIBLE_SHOWN_MS) this.incompatible.delete(id)
  }
}
