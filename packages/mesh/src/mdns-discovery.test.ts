import { test } from 'node:test'
import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PeerDiscoveryEvents, PeerId, PeerInfo } from '@libp2p/interface'
import { TypedEventEmitter } from 'main-event'
import { UnconnectedPeerDiscovery } from './mdns-discovery.js'

class FakeDiscovery extends TypedEventEmitter<PeerDiscoveryEvents> {
  started = 0
  stopped = 0
  async start(): Promise<void> {
    this.started++
  }
  async stop(): Promise<void> {
    this.stopped++
  }
  find(id: PeerId): void {
    this.safeDispatchEvent('peer', { detail: { id, multiaddrs: [] } })
  }
}

const newPeerId = async (): Promise<PeerId> => peerIdFromPrivateKey(await generateKeyPair('Ed25519'))

test('found peers that are connected are dropped; others reach libp2p, as often as they are found', async () => {
  const [a, b] = [await newPeerId(), await newPeerId()]
  const connected = new Set([a.toString()])
  const inner = new FakeDiscovery()
  const discovery = new UnconnectedPeerDiscovery(inner, (peer) => connected.has(peer.id.toString()))
  const seen: PeerInfo[] = []
  discovery.addEventListener('peer', (evt) => seen.push(evt.detail))

  for (let round = 0; round < 3; round++) [a, b].forEach((id) => inner.find(id))
  assert.deepEqual(
    seen.map((p) => p.id.toString()),
    [b, b, b].map(String)
  )
  // once a's connection closes, its next answer is passed on (a restarted peer may answer from a new port)
  connected.delete(a.toString())
  inner.find(a)
  assert.equal(seen.at(-1)?.id.toString(), a.toString())
  assert.deepEqual(discovery.counts, { passed: 4, dropped: 3 })
})

test('start and stop reach the mDNS component it wraps', async () => {
  const inner = new FakeDiscovery()
  const discovery = new UnconnectedPeerDiscovery(inner, () => false)
  await discovery.start()
  await discovery.stop()
  assert.deepEqual([inner.started, inner.stopped], [1, 1])
})
