/**
 * @sollol/mesh: the agent's libp2p mesh. Zero-config discovery (mDNS, with a clear warning where it
 * cannot work), Noise-encrypted TCP, gossiped announcements validated at the boundary, membership from
 * @sollol/core, and the state protocol any peer answers.
 *
 * @example
 * ```ts
 * import { Mesh, loadOrCreateIdentity } from '@sollol/mesh'
 * const { key } = await loadOrCreateIdentity('/var/lib/sollol')
 * const mesh = new Mesh({ cluster: 'default', privateKey: key, port: 7490, timings: LAN_MESH_TIMINGS, logger, describeSelf })
 * await mesh.start()
 * clusterViewOf(mesh.snapshot()) // @sollol/core: { cluster, self, nodes: [...], coordinator: null, plan: null }
 * ```
 */
// First: libp2p 3 needs Promise.withResolvers, which Node 20 lacks.
import './polyfill.js'

export { dropKind, Mesh } from './mesh.js'
export type { MeshCounters, MeshEvents, MeshLogger, MeshOptions, SelfDescription } from './mesh.js'
export { loadOrCreateIdentity, IDENTITY_FILE, INCARNATION_FILE, nextIncarnation, nextPersistedIncarnation } from './identity.js'
export { ClusterKeyError, clusterKeyFingerprint, generateClusterKey, parseClusterKey, readClusterKey } from './cluster-key.js'
export { hasMulticastRoute, lanAddresses, mdnsAvailability } from './network-environment.js'
export type { LanAddress, MdnsAvailability } from './network-environment.js'
export {
  announceTopic,
  heartbeatProtocol,
  helloProtocol,
  introductionsProtocol,
  livenessTopic,
  mdnsServiceTag,
  stateProtocol,
  WIRE,
  type WireEntry
} from './protocols.js'
export { BEAT_BYTES, decodeBeat, encodeBeat } from './heartbeat.js'
export { fetchClusterState, discoverAndFetchState } from './state-client.js'
export { createMeshNode } from './node.js'
export { decodeSwarmKey, privateNetwork, XSalsa20Stream } from './private-network.js'
export type { MeshNode, MeshTransport, NodeOptions } from './node.js'
