/**
 * A rogue cluster member for the fuzz test: it holds the cluster key, joins the mesh with a throw-away
 * identity and sends malformed and hostile messages through every protocol. Run inside a test host:
 *   node rogue.js <cluster-key-file> <count> <multiaddr>...
 * Prints a JSON summary of what it sent.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PeerId } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { ANNOUNCEMENT_VERSION, encodeIntroductions, encodeLivenessReport, MAX_INTRODUCTIONS, type Announcement } from '@sollol/core'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { lpStream } from '@libp2p/utils'
import { seededRandom } from '@sollol/gguf'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { gossipsub } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import { tcp } from '@libp2p/tcp'
import { createLibp2p } from 'libp2p'
import {
  announceTopic,
  heartbeatProtocol,
  helloProtocol,
  introductionsProtocol,
  livenessTopic,
  privateNetwork,
  readClusterKey,
  stateProtocol
} from '@sollol/mesh'

const [keyFile, countText, ...targets] = process.argv.slice(2)
const count = Number(countText)

function announcement(peerId: string, over: Record<string, unknown> = {}): Record<string, unknown> {
  const a: Announcement = {
    v: ANNOUNCEMENT_VERSION,
    cluster: 'default',
    peerId,
    incarnation: Date.now(),
    seq: 1,
    hostname: 'rogue',
    agentVersion: '0.1.0',
    addresses: [],
    rpc: { host: '10.213.0.99', port: 50052, protocol: '6.0.0', state: 'failed', llamaBuild: 'x', servingTerm: 0, access: 'direct' },
    devices: [],
    memoryBudget: 1,
    cpuThreads: 1,
    models: [],
    canCoordinate: false,
    apiPort: null,
    speed: null,
    coordinator: null,
    plan: null
  }
  return { ...a, ...over }
}

const encoder = new TextEncoder()

/** The i-th malformed message: every kind the boundary must refuse. */
function malformed(i: number, rand: () => number, selfId: string, victimId: string): Uint8Array {
  const kind = i % 12
  const valid = announcement(selfId, { seq: i + 1 })
  switch (kind) {
    case 0:
      return Uint8Array.from({ length: 1 + Math.floor(rand() * 200) }, () => Math.floor(rand() * 256))
    case 1:
      return encoder.encode('{"v":1, "cluster": "default", ')
    case 2:
      return encoder.encode(JSON.stringify([1, 2, 3]))
    case 3:
      return encoder.encode(JSON.stringify({ ...valid, seq: 'seven' }))
    case 4:
      return encoder.encode(JSON.stringify({ ...valid, memoryBudget: -1 }))
    case 5:
      return encoder.encode(JSON.stringify({ ...valid, memoryBudget: 1e30 }))
    case 6:
      return encoder.encode(JSON.stringify({ ...valid, hostname: 'x'.repeat(70_000) }))
    case 7:
      return encoder.encode('['.repeat(5000) + ']'.repeat(5000))
    case 8:
      return encoder.encode(JSON.stringify({ ...valid, v: 99 }))
    // speaks for another peer: a claim of a huge term in the victim's name
    case 9:
      return encoder.encode(
        JSON.stringify(announcement(victimId, { seq: 1e6 + i, incarnation: Date.now() * 2, coordinator: { peerId: victimId, term: 999 } }))
      )
    // (unknown fields alone are accepted: a newer release adds fields; a value out of range is not)
    case 10:
      return encoder.encode(JSON.stringify({ ...valid, admin: true, rpc: { ...(valid.rpc as object), port: 70_000 } }))
    default:
      return encoder.encode(JSON.stringify({ ...valid, devices: [{ kind: 'quantum', name: 'q', memoryTotal: 1, memoryFree: 1 }] }))
  }
}

const key = await readClusterKey(keyFile ?? '')
// Built by hand rather than with createMeshNode: a large gossip send buffer, so that its own publishes are
// not dropped locally (gossipsub has no back-pressure) and all of them reach the agents.
const node = await createLibp2p({
  privateKey: await generateKeyPair('Ed25519'),
  addresses: { listen: ['/ip4/0.0.0.0/tcp/0'] },
  transports: [tcp()],
  connectionProtector: privateNetwork({ psk: key }),
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: {
    identify: identify(),
    pubsub: gossipsub({ allowPublishToZeroTopicPeers: true, maxOutboundBufferSize: 1024 * 1024 * 1024 })
  }
})
const selfId = node.peerId.toString()
const summary = { gossip: 0, gossipFailed: 0, illegalClaims: 0, livenessReports: 0, streams: 0, streamErrors: 0, redials: 0 }
const topic = announceTopic('default')
node.services.pubsub.subscribe(topic)
node.services.pubsub.subscribe(livenessTopic('default'))
// Asked on connecting which members it knows, it names as many as an answer may hold, all invented (at the
// discard port of the agent's own loopback): each agent dials each once, and no more (introductions.ts).
const invented = await Promise.all(
  Array.from({ length: MAX_INTRODUCTIONS }, async () => ({
    peerId: peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString(),
    addresses: ['/ip4/127.0.0.1/tcp/9']
  }))
)
await node.handle(introductionsProtocol('default'), async (stream) => {
  await lpStream(stream).write(encodeIntroductions(invented))
  await stream.close()
})
const peers: PeerId[] = []
for (const target of targets) {
  const connection = await node.dial(multiaddr(target), { signal: AbortSignal.timeout(10_000) })
  peers.push(connection.remotePeer)
}
// let the gossip mesh form (a few heartbeats) so that publishes reach every target
const deadline = Date.now() + 10_000
while (Date.now() < deadline && node.services.pubsub.getSubscribers(topic).length < peers.length)
  await new Promise((resolve) => setTimeout(resolve, 100))
const victimId = peers[0]?.toString() ?? selfId
const rand = seededRandom(20261127)

// Paced: gossipsub drops what does not fit its outbound buffers, and the point is that every message arrives.
// Every message must reach every target, on a loaded 2-core machine too: batches of 10, then a pause that
// leaves the event loop free to answer the agents' pings (a busy rogue gets its connections closed), and
// a redial of any target whose connection dropped, waiting for its gossip subscription to be back.
async function ensureConnected(): Promise<boolean> {
  let redialled = false
  for (let t = 0; t < targets.length; t++) {
    const peer = peers[t]
    if (peer === undefined || node.getConnections(peer).length > 0) continue
    summary.redials++
    redialled = true
    await node.dial(multiaddr(targets[t] ?? ''), { signal: AbortSignal.timeout(10_000) }).catch(() => {})
    const until = Date.now() + 5000
    while (Date.now() < until && !node.services.pubsub.getSubscribers(topic).some((p) => p.equals(peer)))
      await new Promise((resolve) => setTimeout(resolve, 50))
  }
  return redialled
}
for (let i = 0; i < count; i++) {
  if (i % 10 === 0) {
    await new Promise((resolve) => setTimeout(resolve, 15))
    // a dropped connection may have lost the last batch: send it again (new gossip ids), so that at least
    // `count` malformed messages reach every target
    if (await ensureConnected()) i = Math.max(0, i - 10)
  }
  try {
    await node.services.pubsub.publish(topic, malformed(i, rand, selfId, victimId))
    summary.gossip++
  } catch {
    summary.gossipFailed++
  }
}
// Well-formed, but a coordinator claim (and a plan) from a node that cannot coordinate: must change nothing.
for (let i = 0; i < 20; i++) {
  const claim = announcement(selfId, { seq: 1_000_000 + i, coordinator: { peerId: selfId, term: 500 + i } })
  await node.services.pubsub.publish(topic, encoder.encode(JSON.stringify(claim)))
  summary.illegalClaims++
}
// Eligible-looking (it says it can coordinate and holds the cluster's model) and claiming the largest
// term JSON can carry: must change nothing either (terms are bounded; see election.ts).
const modelId = process.env.SOLLOL_ROGUE_MODEL_ID
if (modelId !== undefined) {
  for (let i = 0; i < 5; i++) {
    const claim = announcement(selfId, {
      seq: 2_000_000 + i,
      canCoordinate: true,
      models: [{ name: 'model.gguf', size: 1, id: modelId }],
      coordinator: { peerId: selfId, term: 2 ** 53 - 1 }
    })
    await node.services.pubsub.publish(topic, encoder.encode(JSON.stringify(claim)))
    summary.illegalClaims++
  }
}
// Liveness reports: malformed ones, and well-formed ones saying every target is gone (the rogue is no
// target's watcher): counted, never acted on.
for (let i = 0; i < 20; i++) {
  const junk =
    i % 2 === 0 ? encoder.encode('{"v":1,"subject":') : encoder.encode(JSON.stringify({ v: 1, subject: victimId, state: 'dead' }))
  await node.services.pubsub.publish(livenessTopic('default'), junk).catch(() => {})
  for (const peer of peers) {
    const lie = encodeLivenessReport({ subject: peer.toString(), incarnation: 2 ** 53 - 1, seq: 2 ** 53 - 1, state: 'gone' })
    await node.services.pubsub.publish(livenessTopic('default'), lie).catch(() => {})
  }
  summary.livenessReports++
}
// The request/response protocols, fed garbage, and protocols nobody speaks.
for (let i = 0; i < 400; i++) {
  const peer = peers[i % peers.length]
  if (peer === undefined) break
  const protocol =
    [
      stateProtocol('default'),
      helloProtocol('default'),
      heartbeatProtocol('default'),
      introductionsProtocol('default'),
      '/sollol/default/nonsense/1.0.0'
    ][i % 5] ?? ''
  try {
    const stream = await node.dialProtocol(peer, protocol, { signal: AbortSignal.timeout(3000) })
    stream.send(Uint8Array.from({ length: 1 + Math.floor(rand() * 4096) }, () => Math.floor(rand() * 256)))
    await stream.close()
    summary.streams++
  } catch {
    summary.streamErrors++
  }
}
// stay connected a moment so that everything queued is delivered
await new Promise((resolve) => setTimeout(resolve, 3000))
console.log(JSON.stringify(summary))
await node.stop()
