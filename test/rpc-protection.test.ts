/**
 * rpc-servers reachable only by the coordinator of the current term: by default they listen on loopback
 * and the coordinator comes in through the mesh; neither another host nor another cluster member gets in.
 */
import { after, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { SPLIT_TEST_MODEL, writeTestModel } from '@sollol/gguf'
import { pidsOf, TestNetwork } from './helpers/netns.js'
import { CLI, completeFrom, ROOT, TestAgent } from './helpers/agents.js'
import { waitFor } from './helpers/wait.js'

const dir = mkdtempSync(join(tmpdir(), 'sollol-rpc-'))
const model = join(dir, 'model.gguf')
writeTestModel(model, SPLIT_TEST_MODEL)
const network = TestNetwork.create([{}, {}, {}, {}])
const h1 = network.host(0)
const h2 = network.host(1)
const h3 = network.host(2)
const h4 = network.host(3)
const common = ['--rpc-threads', '1', '--ctx-size', '512']
// The model holder offers too little to hold the model alone: the worker's rpc-server must be used.
const TOKEN = 'correct-horse-battery-staple'
const coordinator = new TestAgent(h1, dir, [...common, '--model', model, '--max-memory', '30MiB', '--api-token', TOKEN])
const worker = new TestAgent(h2, dir, [...common, '--max-memory', '60MiB'])
// Another member whose rpc-server is reachable only through the mesh tunnel, and one open to the LAN. Both
// are given a slow speed so that the plan is the holder and the worker (which hold the model): a server in
// the plan has llama-server as its one client, and the direct probe of the open one below would find it busy.
// Measured, four agents calibrating at once on two cores rank them by chance (CI once planned the open one).
const notPlanned = ['--rpc-speed', '10']
const member = new TestAgent(h3, dir, [...common, ...notPlanned, '--rpc-access', 'tunnel', '--max-memory', '20MiB'])
const open = new TestAgent(h4, dir, [...common, ...notPlanned, '--rpc-access', 'open', '--max-memory', '20MiB'])
const all = [coordinator, worker, member, open]

after(async () => {
  await Promise.all(all.map(async (a) => await a.stop()))
  network.destroy()
  rmSync(dir, { recursive: true, force: true })
})

/** A rogue cluster member: a throw-away libp2p identity that dials the worker's tunnel and speaks RPC. */
const ROGUE = `
import { createMeshNode } from '@sollol/mesh'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { FAST_MESH_TIMINGS } from '@sollol/core'
const node = await createMeshNode({ privateKey: await generateKeyPair('Ed25519'), cluster: 'default', listenHost: '0.0.0.0', port: 0, mdns: false, announceLoopback: false, timings: FAST_MESH_TIMINGS })
let result = 'no-answer'
try {
  const stream = await node.dialProtocol(multiaddr(process.argv[1]), '/sollol/default/tunnel/rpc/1.0.0', { signal: AbortSignal.timeout(5000) })
  const hello = new Uint8Array(33); hello[0] = 14; hello[1] = 24
  stream.send(hello)
  result = await new Promise((resolve) => {
    stream.addEventListener('message', () => resolve('answered'))
    stream.addEventListener('close', () => resolve('closed'))
    setTimeout(() => resolve('no-answer'), 3000)
  })
} catch (err) { result = 'refused: ' + err.message }
console.log(result)
await node.stop()
`

test('the worker rpc-server is used by the coordinator only: not from another host, not by another member', async () => {
  for (const a of all) a.start()
  const view = await waitFor(
    'a plan that uses the worker',
    () => {
      const v = coordinator.view()
      // every rpc-server measured too (while it is `starting` its own speed test is its one client)
      const measured = v !== undefined && v.nodes.length === 4 && v.nodes.every((n) => n.rpc.state === 'ready')
      return measured &&
        v.plan?.server.state === 'ready' &&
        v.plan.assignments.some((a) => a.peerId === worker.view()?.self && a.layers !== null)
        ? v
        : undefined
    },
    { timeoutMs: 60_000 }
  )
  // The inference API reachable from the LAN takes the bearer token, and nothing without it.
  assert.equal(view.plan!.server.auth, 'token')
  const noToken = await completeFrom(h3, dir, view.plan!.server.url)
  assert.equal(noToken.ok, false)
  assert.match(noToken.output, /"status":401/)
  const completion = await completeFrom(h3, dir, view.plan!.server.url, 10_000, TOKEN)
  assert.ok(completion.ok, completion.output)
  // The token reaches llama-server through its environment, never its command line (readable in /proc by
  // anyone), and the agent's /metrics still gets llama-server's own series with it.
  const servers = pidsOf(h1, 'llama-server')
  assert.equal(servers.length, 1)
  assert.ok(!readFileSync(`/proc/${servers[0]}/cmdline`, 'utf8').includes(TOKEN), 'the token is not in argv')
  const metrics = await h1.run(process.execPath, [
    '-e',
    "fetch('http://127.0.0.1:7491/metrics').then(async (r) => console.log(await r.text()))"
  ])
  assert.match(String(metrics.stdout), /llamacpp:/, "llama-server's own metrics, fetched with the token")
  const workerNode = view.nodes.find((n) => n.peerId === worker.view()!.self)!
  assert.equal(workerNode.rpc.access, 'gated')
  assert.equal(workerNode.rpc.host, h2.address, 'the gate listens on the announced LAN address')

  // From another host to the gated worker: the gate admits only the coordinator's address.
  const gated = await h3.run(process.execPath, [CLI, 'probe', `${h2.address}:50052`, '--timeout', '2000'])
  assert.equal(gated.exitCode, 1)
  assert.doesNotMatch(String(gated.stdout), /RPC protocol/)
  await waitFor('the refusal in the worker log', () => /rpc gate: refused a connection/.test(worker.log()), { timeoutMs: 5000 })

  // The tunnel-only member: nothing listens on its LAN port, and its tunnel refuses a member that is not the coordinator.
  const memberNode = view.nodes.find((n) => n.peerId === member.view()!.self)!
  assert.equal(memberNode.rpc.access, 'tunnel')
  const direct = await h4.run(process.execPath, [CLI, 'probe', `${h3.address}:50052`, '--timeout', '2000'])
  assert.equal(direct.exitCode, 1)
  assert.match(String(direct.stderr), /connection refused/)
  const rogue = await h4.run(
    process.execPath,
    ['--input-type=module', '-e', ROGUE, `/ip4/${h3.address}/tcp/7490/p2p/${member.view()!.self}`],
    { cwd: ROOT }
  )
  assert.match(String(rogue.stdout), /closed|refused/, String(rogue.stdout) + String(rogue.stderr))
  await waitFor('the refusal in the member log', () => /tunnel refused: peer not admitted/.test(member.log()), { timeoutMs: 5000 })

  // The opt-out: --rpc-open is reachable directly, and says so.
  const openNode = view.nodes.find((n) => n.peerId === open.view()?.self)
  assert.equal(openNode?.rpc.access, 'direct')
  assert.ok(!view.plan!.assignments.some((a) => a.peerId === openNode.peerId), 'the open node is not in the plan (its one client)')
  const probe = await h3.run(process.execPath, [CLI, 'probe', `${h4.address}:50052`])
  assert.equal(probe.exitCode, 0, String(probe.stderr))
  assert.match(open.log(), /--rpc-access open: the rpc-server accepts anyone on the LAN/)
  // The completion still works after all that (nothing was disturbed).
  assert.ok((await completeFrom(h3, dir, view.plan!.server.url, 10_000, TOKEN)).ok)
})
