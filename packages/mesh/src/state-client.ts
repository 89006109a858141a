/**
 * Asking a cluster for its state from outside an agent (`sollol-agent status`): a short-lived libp2p
 * node with a throw-away identity dials a given peer, or finds one by mDNS, and reads the state protocol.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { lpStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import type { ClusterView } from '@sollol/core'
import { FAST_MESH_TIMINGS } from '@sollol/core'
import { createMeshNode } from './node.js'
import { MAX_STATE_BYTES, stateProtocol } from './protocols.js'

async function ephemeralNode(cluster: string, mdns: boolean, clusterKey?: Uint8Array) {
  return await createMeshNode({
    privateKey: await generateKeyPair('Ed25519'),
    cluster,
    transport: 'tcp',
    listenHost: '0.0.0.0',
    port: 0,
    mdns,
    announceLoopback: true,
    timings: FAST_MESH_TIMINGS,
    ...(clusterKey !== undefined ? { clusterKey } : {})
  })
}

async function readState(
  node: Awaited<ReturnType<typeof ephemeralNode>>,
  target: Parameters<typeof node.dialProtocol>[0],
  cluster: string,
  timeoutMs: number
): Promise<ClusterView> {
  const stream = await node.dialProtocol(target, stateProtocol(cluster), { signal: AbortSignal.timeout(timeoutMs) })
  const data = await lpStream(stream, { maxDataLength: MAX_STATE_BYTES }).read({ signal: AbortSignal.timeout(timeoutMs) })
  await stream.close().catch(() => {})
  return JSON.parse(new TextDecoder().decode(data.subarray())) as ClusterView
}

/** The state as seen by the agent at `address` (a multiaddr with /p2p/ id). */
export async function fetchClusterState(address: string, cluster: string, timeoutMs = 5000, clusterKey?: Uint8Array): Promise<ClusterView> {
  const node = await ephemeralNode(cluster, false, clusterKey)
  try {
    return await readState(node, multiaddr(address), cluster, timeoutMs)
  } finally {
    await node.stop()
  }
}

/** Finds any agent of `cluster` on the LAN by mDNS and asks it; undefined when none answers in time. */
export async function discoverAndFetchState(cluster: string, timeoutMs = 4000, clusterKey?: Uint8Array): Promise<ClusterView | undefined> {
  const node = await ephemeralNode(cluster, true, clusterKey)
  try {
    const deadline = Date.now() + timeoutMs
    const found = await new Promise<Parameters<typeof node.dialProtocol>[0] | undefined>((resolve) => {
      const timer = setTimeout(() => resolve(undefined), timeoutMs)
      node.addEventListener(
        'peer:discovery',
        (evt) => {
          clearTimeout(timer)
          resolve(evt.detail.id)
        },
        { once: true }
      )
    })
    if (found === undefined) return undefined
    return await readState(node, found, cluster, Math.max(1000, deadline - Date.now()))
  } finally {
    await node.stop()
  }
}
