/**
 * Everything an agent says on the wire, in one table: each gossip topic and libp2p protocol with its
 * version, the largest message it accepts and where its bytes are read and checked. The cluster name is
 * part of every name, so clusters on one LAN never mix.
 *
 * Version policy (ARCHITECTURE.md "Wire versions"): a name's version changes only when old and new agents
 * can no longer read each other; a field added within a version is one older agents keep and ignore (the
 * announcement says which major versions its sender speaks, `wire`). A renamed topic or protocol splits a
 * rolling upgrade, so the names are pinned by a unit test (protocols.test.ts).
 *
 * To add a protocol: a row here, its service beside the others (hello-service.ts, heartbeat-service.ts,
 * tunnel-service.ts) for its bytes, its decisions in mesh.ts.
 */
import { MAX_ANNOUNCEMENT_BYTES, MAX_INTRODUCTIONS_BYTES, MAX_LIVENESS_REPORT_BYTES } from '@sollol/core'
import { BEAT_BYTES } from './heartbeat.js'

export interface WireEntry {
  /** `gossip`: a pubsub topic; `request`: one question, one length-prefixed answer; `stream`: long-lived. */
  readonly kind: 'gossip' | 'request' | 'stream'
  /** The version in the name: a topic's major, a protocol's semver. */
  readonly version: string
  /** The largest message read (length-prefix limit or size check); null for a tunnel's plain bytes. */
  readonly maxBytes: number | null
  /** Where the bytes are read and checked. */
  readonly schema: string
}

export const WIRE = {
  /** Every member's announcement: on change, on a slow refresh. */
  announce: {
    kind: 'gossip',
    version: '1',
    maxBytes: MAX_ANNOUNCEMENT_BYTES,
    schema: '@sollol/core announcement.ts parseAnnouncement (major versions in `v`, ranges in `wire`)'
  },
  /** What a member's watchers saw of it (suspect, alive, gone). */
  liveness: {
    kind: 'gossip',
    version: '1',
    maxBytes: MAX_LIVENESS_REPORT_BYTES,
    schema: '@sollol/core liveness.ts parseLivenessReport'
  },
  /** The agent's own latest announcement, asked of its owner, so a new connection joins at once. */
  hello: { kind: 'request', version: '1.0.0', maxBytes: MAX_ANNOUNCEMENT_BYTES, schema: 'as announce' },
  /** The members a peer knows and their announced addresses, asked on a new connection (dialled once each). */
  introductions: {
    kind: 'request',
    version: '1.0.0',
    maxBytes: MAX_INTRODUCTIONS_BYTES,
    schema: '@sollol/core introductions.ts parseIntroductions'
  },
  /** The agent's view of the cluster (JSON; a 1,000-node view is ~2 MB). */
  state: { kind: 'request', version: '1.0.0', maxBytes: 4 * 1024 * 1024, schema: '@sollol/core cluster-view.ts ClusterView' },
  /** One long-lived stream per direction and peer: a beat (incarnation, seq) every announce interval. */
  heartbeat: { kind: 'stream', version: '1.0.0', maxBytes: BEAT_BYTES, schema: 'heartbeat.ts decodeBeat' },
  /** TCP over the mesh (`rpc`: a worker's loopback rpc-server, for the coordinator only; `openai`). */
  tunnel: { kind: 'stream', version: '1.0.0', maxBytes: null, schema: 'plain bytes, admitted per peer (tunnel-service.ts)' }
} as const satisfies Record<string, WireEntry>

export const announceTopic = (cluster: string): string => `/sollol/${cluster}/announce/${WIRE.announce.version}`
export const livenessTopic = (cluster: string): string => `/sollol/${cluster}/liveness/${WIRE.liveness.version}`
export const helloProtocol = (cluster: string): string => `/sollol/${cluster}/hello/${WIRE.hello.version}`
export const introductionsProtocol = (cluster: string): string => `/sollol/${cluster}/introductions/${WIRE.introductions.version}`
export const stateProtocol = (cluster: string): string => `/sollol/${cluster}/state/${WIRE.state.version}`
export const heartbeatProtocol = (cluster: string): string => `/sollol/${cluster}/heartbeat/${WIRE.heartbeat.version}`
export const tunnelProtocol = (cluster: string, name: string): string => `/sollol/${cluster}/tunnel/${name}/${WIRE.tunnel.version}`
/** Keyed clusters add the key's fingerprint, so open and keyed agents of one name do not even find each other. */
export const mdnsServiceTag = (cluster: string, keyFingerprint?: string): string =>
  `_sollol-${cluster}${keyFingerprint !== undefined ? `-${keyFingerprint}` : ''}._udp.local`
/** Largest state reply accepted. */
export const MAX_STATE_BYTES = WIRE.state.maxBytes
