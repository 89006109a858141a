/**
 * The libp2p node: TCP + Noise + yamux, identify, ping, gossipsub and (unless disabled) mDNS. In-process
 * tests run the same node over libp2p's in-memory transport instead of TCP (`transport: 'memory'`).
 */
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { gossipsub } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { memory } from '@libp2p/memory'
import { tcp } from '@libp2p/tcp'
import type { PrivateKey } from '@libp2p/interface'
import { createLibp2p } from 'libp2p'
import { mdnsQueryIntervalMs, type MeshTimings } from '@sollol/core'
import { mdnsDiscovery } from './mdns-discovery.js'
import { mdnsServiceTag } from './protocols.js'
import { clusterKeyFingerprint } from './cluster-key.js'
import { privateNetwork } from './private-network.js'
import { coalescingConnections } from './coalescing-connection.js'

/**
 * `tcp`: the LAN. `memory`: libp2p's in-process transport (nodes of one process only; addresses
 * `/memory/<name>`), for tests of whole agents and clusters that need no network namespaces.
 */
export type MeshTransport = 'tcp' | 'memory'

export interface NodeOptions {
  readonly privateKey: PrivateKey
  readonly cluster: string
  readonly transport: MeshTransport
  readonly listenHost: string
  readonly port: number
  readonly mdns: boolean
  /** Keep loopback addresses in what we announce (all agents on one host, e.g. the demo). */
  readonly announceLoopback: boolean
  readonly timings: MeshTimings
  /** A cluster key (private network): without the same key no connection is possible. */
  readonly clusterKey?: Uint8Array
}

/** Connections an agent keeps: a LAN cluster with room for status clients and reconnects. */
export const MAX_CONNECTIONS = 256
/** Streams a peer may have open on one connection (every protocol together; tunnels take up to 256). */
export const MAX_STREAMS_PER_CONNECTION = 512

const isLoopback = (ma: { toString: () => string }): boolean => /^\/ip4\/127\.|^\/ip6\/::1\//.test(ma.toString())

export async function createMeshNode(o: NodeOptions) {
  return await createLibp2p({
    privateKey: o.privateKey,
    addresses: {
      // an in-memory listener is named after the node (one per process and peer id)
      listen: [o.transport === 'memory' ? `/memory/${o.privateKey.publicKey.toString()}` : `/ip4/${o.listenHost}/tcp/${o.port}`],
      // Peers on other hosts that dial an advertised loopback address reach themselves.
      announceFilter: (addrs) => (o.announceLoopback ? addrs : addrs.filter((a) => !isLoopback(a)))
    },
    transports: [o.transport === 'memory' ? memory() : tcp()],
    // the protector is libp2p's one hook on the raw connection: both join the writes of a task into one
    // segment (coalescing-connection.ts); the cluster key's also encrypts
    connectionProtector: o.clusterKey !== undefined ? privateNetwork({ psk: o.clusterKey }) : coalescingConnections(),
    connectionEncrypters: [noise()],
    // Limits on what peers may open (libp2p's defaults, written down, with fewer streams per connection):
    // a key holder still cannot make the agent hold more than ~maxConnections x maxInboundStreams x 256 KiB
    // (yamux's initial window, which only grows as we read) of unread data.
    // No yamux keep-alive: its ping every 30 s on every connection, both ways, was a third of the messages
    // an idle agent handled among 20 (measured with tcpdump). Heartbeats say who is alive, and libp2p's
    // connection monitor (pingIntervalMs) closes a dead connection.
    streamMuxers: [yamux({ maxInboundStreams: MAX_STREAMS_PER_CONNECTION, enableKeepAlive: false })],
    connectionManager: {
      maxConnections: MAX_CONNECTIONS,
      maxIncomingPendingConnections: 10,
      // new inbound connections per second per remote host: a flood from one host is refused early
      inboundConnectionThreshold: 5,
      inboundUpgradeTimeout: 10_000
    },
    peerDiscovery: o.mdns
      ? [
          mdnsDiscovery({
            serviceTag: mdnsServiceTag(o.cluster, o.clusterKey !== undefined ? clusterKeyFingerprint(o.clusterKey) : undefined),
            interval: mdnsQueryIntervalMs(o.timings, Math.random())
          })
        ]
      : [],
    connectionMonitor: {
      pingInterval: o.timings.pingIntervalMs,
      pingTimeout: { minTimeout: o.timings.pingTimeoutMs, maxTimeout: o.timings.pingTimeoutMs }
    },
    services: {
      identify: identify(),
      ping: ping(),
      // LAN-sized meshes over TCP: publishing to the mesh peers only (not flooding every peer) and a smaller
      // mesh degree halve an idle agent's CPU in a 10-agent cluster; every agent is still reached (multi-hop)
      pubsub: gossipsub({ allowPublishToZeroTopicPeers: true, emitSelf: false, floodPublish: false, D: 4, Dlo: 3, Dhi: 6, Dlazy: 3 })
    }
  })
}

export type MeshNode = Awaited<ReturnType<typeof createMeshNode>>
