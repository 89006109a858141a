/**
 * The mesh end to end: real agents (through the CLI) on test hosts in network namespaces, each with
 * its real rpc-server, discovering each other by mDNS with no configuration.
 */
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { TestNetwork } from './helpers/netns.js'
import { TestAgent } from './helpers/agents.js'
import { waitFor } from './helpers/wait.js'

let network: TestNetwork
let dir: string
let agents: TestAgent[]
let stranger: TestAgent
const timings: Record<string, number> = {}

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'sollol-mesh-'))
  network = TestNetwork.create([{}, {}, {}, {}, {}, {}])
  // host 6 runs no agent: status there must find the cluster on the LAN.
  // Only user-facing flags: a data dir per agent (they share one file system), capacity flags.
  agents = network.hosts.slice(0, 4).map((host, i) => new TestAgent(host, dir, ['--rpc-threads', '1', '--max-memory', `${i + 1}GiB`]))
  stranger = new TestAgent(network.hosts[4]!, dir, ['--rpc-threads', '1', '--cluster', 'other'])
})

after(async () => {
  await Promise.all([...agents, stranger].map(async (a) => await a.stop()))
  network.destroy()
  if (process.env.SOLLOL_KEEP_TEST_LOGS === undefined) rmSync(dir, { recursive: true, force: true })
  console.log('mesh timings (ms):', JSON.stringify(timings))
})

const everyone = (): string[] => agents.map((a) => a.view()?.self ?? '?')

async function allSee(expected: () => string[], what: string, timeoutMs: number, among: TestAgent[] = agents): Promise<number> {
  const started = Date.now()
  await waitFor(
    what,
    () => {
      const want = [...expected()].sort().join(',')
      return among.every((a) => a.peers().sort().join(',') === want)
    },
    { timeoutMs }
  )
  assertStrangerUnseen()
  return Date.now() - started
}

function assertStrangerUnseen(): void {
  const id = stranger.view()?.self
  if (id === undefined) return
  for (const a of agents) assert.ok(!a.peers().includes(id), `${a.host.name} lists the agent of another cluster`)
}

test('four agents with no configuration find each other; status on every host lists all four', async () => {
  const launched = Date.now()
  stranger.start()
  for (const a of agents) a.start()
  await waitFor('every agent to answer', () => agents.every((a) => a.view() !== undefined), { timeoutMs: 30_000 })
  timings.launchToAllAnswering = Date.now() - launched
  const lastStart = Date.now()
  await allSee(everyone, 'a full view on every agent', 15_000)
  timings.launchToFullView = Date.now() - launched
  timings.lastAnswerToFullView = Date.now() - lastStart
  // an rpc-server is announced `starting` until its devices are measured (two calibration models each,
  // four agents on two cores): status is read once every agent sees every rpc-server ready
  await waitFor(
    'every rpc-server measured and ready in every view',
    () => agents.every((a) => a.view()?.nodes.length === 4 && a.view()?.nodes.every((n) => n.rpc.state === 'ready')),
    { timeoutMs: 60_000 }
  )
  timings.launchToAllReady = Date.now() - launched

  for (const agent of agents) {
    const view = await agent.statusJson()
    assert.equal(view.cluster, 'default')
    assert.equal(view.nodes.length, 4, `${agent.host.name}: ${view.nodes.map((n) => n.hostname).join(',')}`)
    for (const other of agents) {
      const node = view.nodes.find((n) => n.peerId === other.view()?.self)
      assert.ok(node !== undefined, `${agent.host.name} lists ${other.host.name}`)
      assert.deepEqual(
        { host: node.rpc.host, port: node.rpc.port },
        { host: other.host.address, port: 50052 },
        "the rpc endpoint is the host's LAN address"
      )
      assert.equal(node.rpc.state, 'ready')
      assert.equal(node.rpc.protocol, '6.0.0')
      assert.equal(node.devices[0]?.kind, 'cpu')
      assert.ok((node.devices[0]?.memoryTotal ?? 0) > 2 ** 30)
      assert.equal(node.cpuThreads, 1)
      assert.equal(node.memoryBudget, (agents.indexOf(other) + 1) * 2 ** 30, '--max-memory as offered')
      assert.equal(node.status, node.peerId === view.self ? 'self' : 'alive')
    }
    assert.equal(view.discovery.mdns, 'ok')
  }
  // One connection per pair, not one per direction.
  await waitFor(
    'one connection per pair',
    () => agents.every((a) => a.view()?.discovery.connections === 3 && a.view()?.discovery.connectedPeers === 3),
    { timeoutMs: 5000 }
  )

  // From a host with no agent: found by mDNS, or asked directly by multiaddr.
  const outsider = network.hosts[5]!
  const viaMdns = await new TestAgent(outsider, dir).statusJson()
  assert.equal(viaMdns.nodes.length, 4)
  const first = agents[0]!.view()!
  const viaPeer = await new TestAgent(outsider, dir).statusJson(['--peer', `/ip4/${agents[0]!.host.address}/tcp/7490/p2p/${first.self}`])
  assert.equal(viaPeer.self, first.self)
  assert.equal(viaPeer.nodes.length, 4)

  // The other cluster's agent sees only itself.
  const strangerView = await stranger.statusJson(['--cluster', 'other'])
  assert.deepEqual(
    strangerView.nodes.map((n) => n.peerId),
    [strangerView.self]
  )
})

test('a SIGKILLed agent leaves every view within 5 s and comes back with the same peer id', async () => {
  const victim = agents[3]!
  const victimId = victim.view()?.self ?? ''
  const others = agents.slice(0, 3)
  victim.signal('SIGKILL')
  await victim.exited()
  const left = await allSee(() => others.map((a) => a.view()?.self ?? '?'), 'the killed agent to leave', 5000, others)
  timings.killToLeft = left
  assert.ok(left <= 5000)

  victim.start()
  await allSee(() => [...others.map((a) => a.view()?.self ?? '?'), victimId], 'the restarted agent to be back', 20_000, others)
  timings.restartToBack = Date.now() - victim.startedAt
  assert.equal(victim.view()?.self, victimId, 'same identity after a restart')
  await allSee(everyone, 'a full view again', 10_000)
})

test('a frozen agent (SIGSTOP) leaves every view within 10 s and returns when it resumes', async () => {
  const victim = agents[2]!
  const victimId = victim.view()?.self ?? ''
  const others = agents.filter((a) => a !== victim)
  const frozenAt = Date.now()
  victim.signal('SIGSTOP')
  await allSee(() => others.map((a) => a.view()?.self ?? '?'), 'the frozen agent to leave', 10_000, others)
  timings.freezeToLeft = Date.now() - frozenAt
  victim.signal('SIGCONT')
  const resumedAt = Date.now()
  await allSee(() => [...others.map((a) => a.view()?.self ?? '?'), victimId], 'the resumed agent to be back', 15_000, others)
  timings.resumeToBack = Date.now() - resumedAt
})
