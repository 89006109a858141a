/**
 * Keeps one connection to every peer the mesh knows of: dials peers found by mDNS (with a growing delay
 * until they answer), peers heard from in this run (at their announced addresses, while they are heard
 * of), members another peer introduced (once) and the bootstrap addresses; closes this side's duplicate
 * connections and makes gossipsub use the one kept. Who is a member is not its business: the mesh tells it
 * who was heard from.
 */
import type { Connection, PeerId } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { IntroducedDials } from '@sollol/core'
import { surplusConnections } from './duplicate-connections.js'
import type { MeshNode } from './node.js'

/** How long a departed peer is redialled at its last announced addresses. */
export const KNOWN_PEER_TTL_MS = 10 * 60_000
/**
 * A newcomer dials us; we leave it to. A peer new to us that we learn of once we are past our own start
 * (NEWCOMER_DIALS_US_PASSES redial passes, 2 s each on a LAN), from its mDNS answer (it answers its own
 * query, so every member finds it at once) or its gossip, has just started and dials every member it found.
 * Dialled from both sides, the two dials raced on its busy CPU: the higher id's 500 ms wait (dialIfUnconnected)
 * is shorter than a handshake there, and in a 20-agent join 9-12 of the newcomer's 19 connections were made
 * twice, a Noise handshake each, then one closed (scripts/probes/join.mjs). Should it be unable to reach
 * us, we dial it after the same grace. Agents starting together still dial each other by the id rule.
 */
const NEWCOMER_DIALS_US_PASSES = 2

function parseAddresses(addresses: readonly string[]): Multiaddr[] {
  return addresses.flatMap((s) => {
    try {
      return [multiaddr(s)]
    } catch {
      return []
    }
  })
}

export interface DialerOptions {
  readonly selfId: string
  /** The libp2p node (undefined while the mesh is stopped). */
  readonly node: () => MeshNode | undefined
  readonly bootstrap: readonly string[]
  /** The redial period; the higher peer id of a pair waits a quarter of it before dialling. */
  readonly redialIntervalMs: number
  readonly now: () => number
  readonly logger: { debug: (fields: Record<string, unknown>, message: string) => void }
}

export class Dialer {
  /**
   * Peers we have heard from in this run, with where to reach them: redialled while unconnected (a newcomer
   * only once it had NEWCOMER_DIALS_US_PASSES redial periods to dial us).
   */
  private readonly known = new Map<string, { addresses: Multiaddr[]; heardAt: number; firstHeardAt: number }>()
  /** Peers found by mDNS and not connected yet, redialled with a growing delay (2 s doubling to 60 s) for 10 min. */
  private readonly discovered = new Map<
    string,
    { addresses: Multiaddr[]; since: number; attempts: number; nextAt: number; firstFoundAt: number }
  >()
  private readonly dialing = new Set<string>()
  /** Introduced members dialled: bounded, whatever peers say (introductions.ts). */
  private readonly introducedDials = new IntroducedDials(KNOWN_PEER_TTL_MS)

  /** When the mesh started: until NEWCOMER_DIALS_US_PASSES after it, we are the newcomer and dial. */
  private startedAt = -Infinity

  constructor(private readonly o: DialerOptions) {}

  start(): void {
    this.startedAt = this.o.now()
  }

  /** Whether a peer first heard of at `firstAt` is left, for now, to dial us (see NEWCOMER_DIALS_US_PASSES). */
  private leftToDialUs(firstAt: number, now: number): boolean {
    const grace = this.o.redialIntervalMs * NEWCOMER_DIALS_US_PASSES
    return firstAt - this.startedAt >= grace && now - firstAt < grace
  }

  /** Peers heard from in this run (members or not). */
  knownIds(): IterableIterator<string> {
    return this.known.keys()
  }

  /**
   * mDNS found a peer. libp2p reports a peer once (when it is new to the peer store): if that first dial
   * fails, on a machine busy starting 20 agents say, nothing would ever dial it again. Kept until connected.
   */
  found(peer: PeerId, addresses: Multiaddr[]): void {
    const now = this.o.now()
    const id = peer.toString()
    // Found again before connecting (its record left the peer store and came back): the grace runs from the first time.
    const firstAt = this.known.get(id)?.firstHeardAt ?? this.discovered.get(id)?.firstFoundAt ?? now
    if (this.leftToDialUs(firstAt, now)) {
      // the redial pass dials it after the grace, if it has not dialled us by then
      const nextAt = firstAt + this.o.redialIntervalMs * NEWCOMER_DIALS_US_PASSES
      this.discovered.set(id, { addresses, since: now, attempts: 0, nextAt, firstFoundAt: firstAt })
      return
    }
    this.discovered.set(id, { addresses, since: now, attempts: 0, nextAt: 0, firstFoundAt: firstAt })
    void this.dialIfUnconnected(peer, addresses)
  }

  /** A peer's own announcement named its addresses (ignoring the ones that do not parse). */
  learned(peerId: string, addresses: readonly string[]): void {
    const now = this.o.now()
    this.known.set(peerId, {
      addresses: parseAddresses(addresses),
      heardAt: now,
      firstHeardAt: this.known.get(peerId)?.firstHeardAt ?? now
    })
  }

  /** Whether the peer's own word on its addresses is held (it is redialled while unconnected). */
  isKnown(peerId: string): boolean {
    return this.known.has(peerId)
  }

  /**
   * Another peer named this one and its addresses (introductions.ts): one dial, with its peer id, so only
   * that peer can answer; nothing is kept, so a wrong word costs one failed dial. Returns whether it dials.
   */
  introduced(peerId: string, addresses: readonly string[]): boolean {
    let peer: PeerId
    try {
      peer = peerIdFromString(peerId)
    } catch {
      return false
    }
    const parsed = parseAddresses(addresses)
    if (parsed.length === 0 || !this.introducedDials.take(peerId, this.o.now())) return false
    void this.dialIfUnconnected(peer, parsed)
    return true
  }

  /** A sign of life from a peer (or its watchers' word): its addresses stay worth redialling. */
  heard(peerId: string): void {
    const known = this.known.get(peerId)
    if (known !== undefined) known.heardAt = this.o.now()
  }

  /** Closes this side's surplus connections to `peer` (see duplicate-connections.ts for the rule). */
  closeDuplicates(peer: PeerId): void {
    const node = this.o.node()
    if (node === undefined) return
    const open = node
      .getConnections(peer)
      .filter((c) => c.status === 'open')
      .map((c) => ({ connection: c, direction: c.direction, openedAt: c.timeline.open }))
    for (const { connection } of surplusConnections(this.o.selfId, peer.toString(), open)) {
      this.o.logger.debug({ peer: peer.toString(), direction: connection.direction }, 'closing a duplicate connection')
      connection.close().catch((err: Error) => connection.abort(err))
    }
  }

  /**
   * Gossipsub opens its one outbound stream per peer on the first connection it is told of and never
   * opens another when that connection closes while the peer stays connected (the topology reports no
   * disconnect): without this, a closed duplicate can leave a member that never receives our gossip.
   * Telling gossipsub of the kept connection again is what the topology would do for a new peer.
   */
  repairGossip(peer: PeerId): void {
    const node = this.o.node()
    if (node === undefined) return
    const connection = node.getConnections(peer).find((c) => c.status === 'open')
    const pubsub = node.services.pubsub as unknown as {
      streamsOutbound: Map<string, unknown>
      onPeerConnected?: (peer: PeerId, connection: Connection) => void
    }
    if (connection === undefined || pubsub.streamsOutbound.has(peer.toString())) return
    pubsub.onPeerConnected?.(peer, connection)
  }

  /**
   * One pass, every redial period: members' connections kept single and used by gossip; unconnected
   * peers that were found or heard from dialled; the bootstrap addresses dialled while not connected.
   * `members`: the members now (heard of through their watchers too).
   */
  redial(members: readonly string[]): void {
    const node = this.o.node()
    if (node === undefined) return
    const now = this.o.now()
    // This runs every 2 s on every agent: one pass over the open connections, and a peer id parsed only
    // for a dial (parsing one per member per pass was a tenth of an idle agent's CPU among 20).
    const connected = new Map<string, { peer: PeerId; connections: number }>()
    for (const { remotePeer } of node.getConnections()) {
      const id = remotePeer.toString()
      connected.set(id, { peer: remotePeer, connections: (connected.get(id)?.connections ?? 0) + 1 })
    }
    for (const id of members) {
      this.heard(id)
      const open = connected.get(id)
      if (open === undefined) continue
      if (open.connections > 1) this.closeDuplicates(open.peer)
      this.repairGossip(open.peer)
    }
    for (const [id, entry] of this.discovered) {
      if (connected.has(id) || now - entry.since > KNOWN_PEER_TTL_MS) {
        this.discovered.delete(id)
        continue
      }
      if (now < entry.nextAt || this.known.has(id)) continue
      entry.attempts++
      entry.nextAt = now + Math.min(60_000, this.o.redialIntervalMs * 2 ** Math.min(5, entry.attempts))
      void this.dialIfUnconnected(peerIdFromString(id), entry.addresses)
    }
    for (const [id, { addresses, heardAt, firstHeardAt }] of this.known) {
      // A peer silent for this long is not coming back at that address: stop knocking.
      if (now - heardAt > KNOWN_PEER_TTL_MS) {
        this.known.delete(id)
        continue
      }
      if (this.leftToDialUs(firstHeardAt, now)) continue
      if (id !== this.o.selfId && !connected.has(id)) void this.dialIfUnconnected(peerIdFromString(id), addresses)
    }
    for (const address of this.o.bootstrap) {
      const ma = multiaddr(address)
      const peerId = /\/p2p\/([^/]+)$/.exec(address)?.[1] ?? null
      if (peerId !== null && connected.has(peerId)) continue
      if (peerId === null && node.getConnections().some((c) => c.remoteAddr.toString().startsWith(ma.toString()))) continue
      node.dial(ma, { signal: AbortSignal.timeout(5000) }).catch((err: Error) => {
        this.o.logger.debug({ address, err: err.message }, 'bootstrap dial failed')
      })
    }
  }

  /**
   * One connection per pair: when both sides learn of each other at once, only the lower peer id dials
   * right away; the higher one waits a quarter of the redial interval (500 ms on a LAN) and dials only if
   * no connection came meanwhile (the lower one may be unable to reach it, or may not know of it at all:
   * a newcomer's mDNS query tells the others nothing, so every wait here delays a join).
   */
  private async dialIfUnconnected(peer: PeerId, addresses: Multiaddr[]): Promise<void> {
    const node = this.o.node()
    const id = peer.toString()
    if (node === undefined || this.dialing.has(id) || node.getConnections(peer).length > 0) return
    this.dialing.add(id)
    try {
      if (this.o.selfId > id) {
        await new Promise((resolve) => setTimeout(resolve, this.o.redialIntervalMs / 4))
        if (this.o.node() === undefined || node.getConnections(peer).length > 0) return
      }
      await node.dial(addresses.length > 0 ? addresses.map((a) => a.encapsulate(`/p2p/${id}`)) : peer, {
        signal: AbortSignal.timeout(5000)
      })
    } catch (err) {
      this.o.logger.debug({ peer: id, err: (err as Error).message }, 'dial failed')
    } finally {
      this.dialing.delete(id)
    }
  }
}
