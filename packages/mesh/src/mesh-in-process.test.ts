/**
 * Real meshes, eight of them, in one process over libp2p's in-memory transport (no mDNS, no root, no network namespaces):
 * the liveness ring end to end in seconds. The network-namespace suite still tests agents as processes;
 * this one runs the Mesh class itself, so its rules can be exercised where a process cannot be frozen.
 * Waits are for conditions with a deadline (these are libp2p nodes, not pure logic).
 */
import { after, test } from 'node:test'
import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { IN_PROCESS_MESH_TIMINGS } from '@sollol/core'
import { Mesh, type SelfDescription } from './index.js'

const N = 8
const TIMINGS = IN_PROCESS_MESH_TIMINGS
const quiet = { debug: () => {}, info: () => {}, warn: () => {} }

const self = (i: number): SelfDescription => ({
  agentVersion: '0.1.0',
  rpc: { host: '127.0.0.1', port: 50052 + i, protocol: null, state: 'ready', llamaBuild: 'test', servingTerm: 0, access: 'direct' },
  devices: [],
  memoryBudget: 1e9,
  cpuThreads: 1,
  models: [],
  canCoordinate: false,
  apiPort: null,
  speed: null,
  coordinator: null,
  plan: null
})

const meshes: Mesh[] = []
after(async () => {
  await Promise.all(meshes.map(async (m) => await m.stop()))
})

async function until<T>(what: string, check: () => T | undefined, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = check()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

/** A mesh in `cluster` that joins through `seed` alone (no mDNS in memory). */
async function startMesh(cluster: string, i: number, seed?: Mesh): Promise<Mesh> {
  const mesh = new Mesh({
    cluster,
    privateKey: await generateKeyPair('Ed25519'),
    transport: 'memory',
    port: 0,
    mdns: false,
    bootstrap: seed === undefined ? [] : [`${seed.announcement().addresses[0]}/p2p/${seed.peerId}`],
    timings: TIMINGS,
    logger: quiet,
    describeSelf: () => self(i)
  })
  await mesh.start()
  meshes.push(mesh)
  return mesh
}

const listed = (m: Mesh): string[] => m.members().map((x) => x.announcement.peerId)

test(`${N} meshes in one process: one ring, four watchers each; a member that cannot beat is reported and refutes; a stopped one leaves every view`, async () => {
  for (let i = 0; i < N; i++) {
    await startMesh('inproc', i, i === 0 ? undefined : meshes[0])
  }
  const started = Date.now()
  await until(
    'every mesh lists the seven others, all alive',
    () => (meshes.every((m) => m.members().filter((x) => x.status === 'alive').length === N - 1) ? true : undefined),
    30_000
  )
  const joinedMs = Date.now() - started

  const ringOk = (live: Mesh[]): true | undefined => {
    const watching = new Map(live.map((m) => [m.peerId, m.snapshot().discovery.watching ?? []]))
    for (const [id, peers] of watching) {
      if (peers.length !== 4) return undefined
      for (const peer of peers) if (!watching.get(peer)?.includes(id)) return undefined
    }
    return true
  }
  await until('four watchers each, both ways', () => ringOk(meshes), 10_000)

  // A member whose heartbeats do not go out (its gossip still does): its watchers report it, the others
  // take their word, and it refutes with a newer announcement, so nobody drops it.
  const deaf = meshes[3]!
  const beats = (deaf as unknown as { heartbeats: { send: unknown } }).heartbeats
  const sendBeat = beats.send
  beats.send = () => {}
  await until('the deaf member refuted a report', () => ((deaf.counters.refutations ?? 0) > 0 ? true : undefined), 20_000)
  const taken = meshes.reduce((sum, m) => sum + m.counters.livenessReportsTaken, 0)
  beats.send = sendBeat
  for (const m of meshes) if (m !== deaf) assert.ok(listed(m).includes(deaf.peerId), 'still listed everywhere: it refuted')
  await until(
    'the deaf member alive again everywhere',
    () =>
      meshes.every((m) => m === deaf || m.members().some((x) => x.announcement.peerId === deaf.peerId && x.status === 'alive'))
        ? true
        : undefined,
    15_000
  )

  // A member that stops: every connection closes, every mesh drops it, and the ring closes over the gap.
  const leaving = meshes[5]!
  const stoppedAt = Date.now()
  await leaving.stop()
  const live = meshes.filter((m) => m !== leaving)
  await until(
    'the stopped member gone from every view',
    () => (live.every((m) => !listed(m).includes(leaving.peerId)) ? true : undefined),
    10_000
  )
  const goneMs = Date.now() - stoppedAt
  await until('the ring closed over the gap', () => ringOk(live), 10_000)
  console.log(
    `in-process: ${N} meshes listed each other after ${joinedMs} ms; the deaf member refuted ${deaf.counters.refutations} report(s) (${taken} taken by others); a stopped one left every view after ${goneMs} ms`
  )
})

test('a newcomer that knows only a seed is introduced to the members the seed knows: the seed`s loss leaves them connected', async () => {
  const seed = await startMesh('inproc-introductions', 0)
  const member = await startMesh('inproc-introductions', 1, seed)
  await until(
    'the seed and the member list each other',
    () => (listed(seed).includes(member.peerId) && listed(member).includes(seed.peerId) ? true : undefined),
    10_000
  )
  const newcomer = await startMesh('inproc-introductions', 2, seed)
  const joined = Date.now()
  // well before either announces again (on change or on the 10 s refresh): only the introduction connects them
  await until(
    'the newcomer connected to the member and both list each other',
    () =>
      newcomer.snapshot().discovery.connectedPeers === 2 &&
      listed(newcomer).includes(member.peerId) &&
      listed(member).includes(newcomer.peerId)
        ? true
        : undefined,
    TIMINGS.announceRefreshMs / 2
  )
  const introducedMs = Date.now() - joined
  assert.equal(newcomer.counters.introducedDials, 1, 'the seed named the member, and the newcomer dialled it')
  assert.equal(seed.counters.introducedDials, 0, 'nobody new to the seed')

  await seed.stop()
  await until(
    'the seed gone from both views',
    () => (![newcomer, member].some((m) => listed(m).includes(seed.peerId)) ? true : undefined),
    10_000
  )
  assert.deepEqual(listed(newcomer), [member.peerId])
  assert.deepEqual(listed(member), [newcomer.peerId])
  console.log(
    `in-process introductions: a newcomer through the seed connected to the member after ${introducedMs} ms; they stay a pair without it`
  )
})
