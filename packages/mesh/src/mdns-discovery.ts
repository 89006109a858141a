import { peerDiscoverySymbol } from '@libp2p/interface'
import type { PeerDiscovery, PeerDiscoveryEvents, PeerId, PeerInfo, Startable } from '@libp2p/interface'
import { mdns, type MulticastDNSComponents, type MulticastDNSInit } from '@libp2p/mdns'
import { TypedEventEmitter } from 'main-event'

/**
 * A peer discovery that passes on what `inner` finds, except peers this node is connected to.
 *
 * Every agent answers every mDNS query and every answer reaches every agent, so with 20 agents each agent
 * receives 20 answers per query, 20 queries per period. libp2p merges every found peer into its peer store
 * (a locked read, decode, merge and write of the peer's record), and at rest all of those peers are
 * connected: their addresses are already known from identify, and the merge changes nothing. Dropped here,
 * an answer costs its packet's parsing only.
 */
export class UnconnectedPeerDiscovery extends TypedEventEmitter<PeerDiscoveryEvents> implements PeerDiscovery, Startable {
  readonly [peerDiscoverySymbol] = this
  readonly [Symbol.toStringTag] = '@sollol/unconnected-peer-discovery'
  /** Found peers passed on and dropped (connected), for tests and diagnostics. */
  readonly counts = { passed: 0, dropped: 0 }

  constructor(
    private readonly inner: PeerDiscovery & Partial<Startable>,
    private readonly isConnected: (peer: PeerInfo) => boolean
  ) {
    super()
    inner.addEventListener('peer', (evt) => {
      if (this.isConnected(evt.detail)) {
        this.counts.dropped++
        return
      }
      this.counts.passed++
      this.safeDispatchEvent('peer', { detail: evt.detail })
    })
  }

  async start(): Promise<void> {
    await this.inner.start?.()
  }

  async stop(): Promise<void> {
    await this.inner.stop?.()
  }
}

/** The part of libp2p's connection manager (an internal interface) this needs. */
interface Connections {
  getConnections(peer?: PeerId): readonly unknown[]
}

/** @libp2p/mdns, with answers from connected peers dropped before libp2p's peer store sees them. */
export function mdnsDiscovery(init: MulticastDNSInit) {
  return (components: MulticastDNSComponents & { readonly connectionManager: Connections }): PeerDiscovery =>
    new UnconnectedPeerDiscovery(mdns(init)(components), (peer) => components.connectionManager.getConnections(peer.id).length > 0)
}
