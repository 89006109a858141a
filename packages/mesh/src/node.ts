/** The libp2p node: TCP + Noise + yamux, identify, ping, gossipsub and (unless disabled) mDNS. */
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { gossipsub } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import { mdns } from '@libp2p/mdns'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import type { PrivateKey } from '@libp2p/interface'
import { preSharedKey } from '@libp2p/pnet'
import { createLibp2p } from 'libp2p'
import type { MeshTimings } from '@sollol/core'
import { mdnsServiceTag } from './protocols.js'
import { clusterKeyFingerprint } from './cluster-key.js'

export interface NodeOptions {
  readonly privateKey: PrivateKey
  readonly cluster: string
  readonly listenHost: string
  readonly port: number
  readonly mdns: boolean
  /** Keep loopback addresses in what we announce (all agents on one host, e.g. the demo). */
  readonly announceLoopback: boolean
  readonly timings: MeshTimings
  /** A cluster key (private network): without the same key no connection is possible. */
  readonly clusterKey?: Uint8Array
}

const isLoopback = (ma: { toString: () => string }): boolean => /^\/ip4\/127\.|^\/ip6\/::1\//.test(ma.toString())

export async function createMeshNode(o: NodeOptions) {
  return await createLibp2p({
    privateKey: o.privateKey,
    addresses: {
      listen: [`/ip4/${o.listenHost}/tcp/${o.port}`],
      // Peers on other hosts that dial an advertised loopback address reach themselves.
      announceFilter: (addrs) => (o.announceLoopback ? addrs : addrs.filter((a) => !isLoopback(a)))
    },
    transports: [tcp()],
    ...(o.clusterKey !== undefined ? { connectionProtector: preSharedKey({ psk: o.clusterKey }) } : {}),
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    peerDiscovery: o.mdns
      ? [
          mdns({
            serviceTag: mdnsServiceTag(o.cluster, o.clusterKey !== undefined ? clusterKeyFingerprint(o.clusterKey) : undefined),
            interval: o.timings.mdnsIntervalMs
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
