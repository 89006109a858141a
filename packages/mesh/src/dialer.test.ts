/**
 * Who dials a newcomer: the Dialer over a stand-in libp2p node that records dials (no network), its clock
 * injected. Our peer id is the lowest of all here, so the higher id's 500 ms wait never applies: what is
 * tested is only the newcomer rule (NEWCOMER_DIALS_US_PASSES).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { Dialer } from './dialer.js'
import type { MeshNode } from './node.js'

const REDIAL_MS = 2000
const GRACE_MS = 2 * REDIAL_MS

async function setUp(): Promise<{ dialer: Dialer; dialled: string[]; clock: { now: number } }> {
  const dialled: string[] = []
  const node = {
    getConnections: () => [],
    dial: async (target: unknown) => {
      dialled.push(String(Array.isArray(target) ? target[0] : target))
      return await new Promise(() => {}) // still dialling: what is counted is that it started
    }
  } as unknown as MeshNode
  const clock = { now: 0 }
  const dialer = new Dialer({
    selfId: '',
    node: () => node,
    bootstrap: [],
    redialIntervalMs: REDIAL_MS,
    now: () => clock.now,
    logger: { debug: () => {} }
  })
  return { dialer, dialled, clock }
}

const newPeer = async () => peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
const address = multiaddr('/ip4/10.0.0.2/tcp/4001')

test('an agent still starting dials the peers mDNS finds at once', async () => {
  const { dialer, dialled, clock } = await setUp()
  dialer.start()
  clock.now = 1000
  const peer = await newPeer()
  dialer.found(peer, [address])
  await Promise.resolve()
  assert.equal(dialled.length, 1)
  assert.match(dialled[0] ?? '', new RegExp(peer.toString()))
})

test('an established agent leaves a newcomer found by mDNS to dial it, and dials it after the grace', async () => {
  const { dialer, dialled, clock } = await setUp()
  dialer.start()
  clock.now = 60_000
  dialer.found(await newPeer(), [address])
  await Promise.resolve()
  assert.equal(dialled.length, 0, 'no dial racing the newcomer`s own')
  clock.now = 60_000 + GRACE_MS - 1
  dialer.redial([])
  assert.equal(dialled.length, 0)
  clock.now = 60_000 + GRACE_MS
  dialer.redial([])
  await Promise.resolve()
  assert.equal(dialled.length, 1, 'still unconnected after the grace: dialled')
})

test('an established agent leaves a newcomer heard through gossip to dial it, then dials it', async () => {
  const { dialer, dialled, clock } = await setUp()
  dialer.start()
  clock.now = 60_000
  const peer = (await newPeer()).toString()
  dialer.learned(peer, [address.toString()])
  dialer.redial([])
  assert.equal(dialled.length, 0)
  clock.now = 60_000 + GRACE_MS
  dialer.redial([])
  await Promise.resolve()
  assert.equal(dialled.length, 1)
})

test('a peer heard of before (a restart, a lost connection) is dialled at once', async () => {
  const { dialer, dialled, clock } = await setUp()
  dialer.start()
  clock.now = 10_000
  const peer = await newPeer()
  dialer.learned(peer.toString(), [address.toString()])
  clock.now = 300_000
  dialer.found(peer, [address])
  await Promise.resolve()
  assert.equal(dialled.length, 1)
})

test('a newcomer found again within the grace is dialled when the grace from its first finding ends', async () => {
  const { dialer, dialled, clock } = await setUp()
  dialer.start()
  clock.now = 60_000
  const peer = await newPeer()
  dialer.found(peer, [address])
  clock.now = 60_000 + GRACE_MS / 2
  dialer.found(peer, [address])
  clock.now = 60_000 + GRACE_MS
  dialer.redial([])
  await Promise.resolve()
  assert.equal(dialled.length, 1, 'the grace is not restarted by a second finding')
})
