/** Names on the wire. The cluster name is part of each, so clusters on one LAN never mix. */
export const announceTopic = (cluster: string): string => `/sollol/${cluster}/announce/1`
/** Gossip: what a member's watchers saw of it (suspect, alive, gone; @sollol/core liveness.ts). */
export const livenessTopic = (cluster: string): string => `/sollol/${cluster}/liveness/1`
/** Request/response: the agent's view of the cluster (JSON). */
export const stateProtocol = (cluster: string): string => `/sollol/${cluster}/state/1.0.0`
/** Request/response: the agent's own latest announcement, so a new connection joins at once. */
/** TCP over the mesh (e.g. `rpc`: a worker's loopback rpc-server, for the coordinator only). */
export const tunnelProtocol = (cluster: string, name: string): string => `/sollol/${cluster}/tunnel/${name}/1.0.0`
/** One long-lived stream per direction and peer: a heartbeat (incarnation, seq) every announce interval. */
export const heartbeatProtocol = (cluster: string): string => `/sollol/${cluster}/heartbeat/1.0.0`
export const helloProtocol = (cluster: string): string => `/sollol/${cluster}/hello/1.0.0`
/** Keyed clusters add the key's fingerprint, so open and keyed agents of one name do not even find each other. */
export const mdnsServiceTag = (cluster: string, keyFingerprint?: string): string =>
  `_sollol-${cluster}${keyFingerprint !== undefined ? `-${keyFingerprint}` : ''}._udp.local`
/** Largest state reply accepted (a 1,000-node view is ~2 MB). */
export const MAX_STATE_BYTES = 4 * 1024 * 1024
