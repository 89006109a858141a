/**
 * Byte-level attacks on every port of real agents, with and without the cluster key: random and mutated
 * bytes at the libp2p port before and after the pnet nonce, garbage Noise, mutated yamux traffic from a
 * real connection, oversized gossip and protocol messages from a key holder, a crowd of silent
 * connections, random bytes at the rpc gate, and hostile HTTP (100 MiB bodies, slow clients) at the API.
 * Every agent must stay up, under the stated memory bound, and the keyed cluster must keep serving the
 * same plan. CI runs it for SOLLOL_WIRE_FUZZ_MS (default 30 s); `npm run fuzz:wire` runs it for 3 minutes.
 */
import { after, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { SPLIT_TEST_MODEL, writeTestModel } from '@sollol/gguf'
import { generateClusterKey } from '@sollol/mesh'
import { TestNetwork } from './helpers/netns.js'
import { completeFrom, ROOT, TestAgent } from './helpers/agents.js'
import { waitFor } from './helpers/wait.js'

const DURATION_MS = Number(process.env.SOLLOL_WIRE_FUZZ_MS ?? 30_000)
/** An agent (mesh, API, no model loaded in-process) stays under this resident size whatever it is sent. */
const RSS_BOUND_BYTES = 400 * 2 ** 20

const dir = mkdtempSync(join(tmpdir(), 'sollol-wire-'))
const key = join(dir, 'cluster.key')
writeFileSync(key, generateClusterKey(), { mode: 0o600 })
const model = join(dir, 'model.gguf')
writeTestModel(model, SPLIT_TEST_MODEL)
const network = TestNetwork.create([{}, {}, {}, {}])
const [h1, h2, h3, attacker] = [network.host(0), network.host(1), network.host(2), network.host(3)]
const keyed = ['--rpc-threads', '1', '--ctx-size', '512', '--cluster-key', key]
const coordinator = new TestAgent(h1, dir, [...keyed, '--model', model, '--max-memory', '30MiB'])
const worker = new TestAgent(h2, dir, [...keyed, '--max-memory', '60MiB'])
const openAgent = new TestAgent(h3, dir, ['--rpc-threads', '1', '--cluster', 'open'])
const agents = [coordinator, worker, openAgent]

after(async () => {
  await Promise.all(agents.map(async (a) => await a.stop()))
  network.destroy()
  if (process.env.SOLLOL_KEEP_TEST_LOGS === undefined) rmSync(dir, { recursive: true, force: true })
})

function rss(pid: number | undefined): number {
  const status = readFileSync(`/proc/${pid ?? 0}/status`, 'utf8')
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? NaN) * 1024
}

test(`byte-level attacks on every port for ${DURATION_MS / 1000} s: every agent stays up and the cluster keeps serving`, async () => {
  for (const a of agents) a.start()
  const serving = await waitFor(
    'the keyed cluster serving with both nodes',
    () => {
      const v = coordinator.view()
      return v?.plan?.server.state === 'ready' && v.nodes.length === 2 && worker.view()?.plan?.generation === v.plan.generation
        ? v
        : undefined
    },
    { timeoutMs: 90_000 }
  )
  await waitFor('the open agent answering', () => openAgent.view() !== undefined, { timeoutMs: 30_000 })
  const generation = serving.plan!.generation

  const spec = join(dir, 'wire-spec.json')
  const target = (a: TestAgent, withKey: boolean, cluster?: string): Record<string, unknown> => ({
    host: a.host.address,
    p2pPort: 7490,
    peerId: a.view()!.self,
    rpcPort: 50052,
    ...(withKey ? { keyFile: key } : {}),
    ...(cluster !== undefined ? { cluster } : {})
  })
  writeFileSync(
    spec,
    JSON.stringify({
      durationMs: DURATION_MS,
      seed: 20261129,
      targets: [target(coordinator, true), target(worker, true), target(openAgent, false, 'open')]
    })
  )
  const [wire, ...http] = await Promise.all([
    attacker.run(process.execPath, [join(ROOT, 'test/dist/helpers/wire-fuzz.js'), spec], { cwd: ROOT, timeout: DURATION_MS + 120_000 }),
    h1.run(process.execPath, [join(ROOT, 'test/dist/helpers/http-fuzz.js'), '7491', '240', '--heavy'], { cwd: ROOT, timeout: 180_000 }),
    h3.run(process.execPath, [join(ROOT, 'test/dist/helpers/http-fuzz.js'), '7491', '240'], { cwd: ROOT, timeout: 180_000 })
  ])
  assert.equal(wire.exitCode, 0, String(wire.stderr))
  const sent = JSON.parse(String(wire.stdout).trim().split('\n').pop() ?? '{}') as {
    rounds: number
    connections: number
    bytes: number
    floodMessages: number
    attacks: Record<string, { runs: number; connections: number; bytes: number }>
  }
  for (const attack of ['raw', 'nonce', 'pnetGarbage', 'noiseGarbage', 'mutated', 'oversized', 'crowd', 'rpc', 'flood'])
    assert.ok((sent.attacks[attack]?.runs ?? 0) > 0, `attack ${attack} ran: ${JSON.stringify(sent.attacks)}`)
  for (const h of http) assert.equal(h.exitCode, 0, String(h.stderr))
  const heavy = JSON.parse(String(http[0]!.stdout).trim()) as Record<string, unknown>
  // refused, not buffered: a 413, or a cut when the client was still sending as the connection closed
  for (const huge of [heavy.hugeDeclared, heavy.hugeChunked])
    assert.ok(huge === 413 || huge === 'cut', `100 MiB bodies: ${JSON.stringify(heavy)}`)
  assert.deepEqual(heavy.slow, { cut: 50, heldOpen: 0 }, 'slow clients are cut by the headers timeout')
  assert.deepEqual(heavy.slowReaders, { complete: 4, incomplete: 0 }, 'slow readers of streamed answers get them whole')
  assert.equal(heavy.afterwards, 'HTTP/1.1 200 OK')

  const report: string[] = []
  for (const a of agents) {
    assert.equal(
      a.pid !== undefined && a.exitCode() === null,
      true,
      `${a.host.name} is up (log: ${a.log().split('\n').slice(-5).join('\n')})`
    )
    const bytes = rss(a.pid)
    report.push(`${a.host.name}: rss ${(bytes / 2 ** 20).toFixed(0)} MiB, drops ${JSON.stringify(a.view()?.counters?.dropReasons)}`)
    assert.ok(bytes < RSS_BOUND_BYTES, `${a.host.name} RSS ${bytes} under ${RSS_BOUND_BYTES}`)
    assert.doesNotMatch(a.log(), /agent died/)
  }
  // still answering, still one cluster with the same plan, still serving
  const fresh = await coordinator.statusJson(['--cluster-key', key])
  assert.equal(fresh.nodes.length, 2)
  assert.equal(fresh.plan?.generation, generation, 'the plan did not change')
  assert.equal(fresh.plan?.server.state, 'ready')
  const completion = await completeFrom(attacker, dir, serving.plan!.server.url)
  assert.ok(completion.ok, completion.output)
  console.log(
    `wire fuzz: ${sent.rounds} rounds, ${sent.connections} connections, ${(sent.bytes / 2 ** 20).toFixed(1)} MiB, ${sent.floodMessages} oversized messages from the flooding member; ${JSON.stringify(sent.attacks)}`
  )
  console.log(`http: ${http.map((h) => String(h.stdout).trim()).join(' | ')}`)
  console.log(report.join('\n'))
})
