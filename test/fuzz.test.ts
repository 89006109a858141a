/**
 * Hostile input: a rogue member holding the cluster key sends 10,000 malformed gossip messages (every kind
 * the boundary must refuse), illegal coordinator claims, garbage on the request/response protocols, and
 * malformed HTTP to the local APIs. Every agent stays up, state and plan stay unchanged, drops are counted.
 */
import { after, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { SPLIT_TEST_MODEL, writeTestModel } from '@sollol/gguf'
import { generateClusterKey } from '@sollol/mesh'
import { MAX_INTRODUCTIONS, type ClusterView } from '@sollol/core'
import { TestNetwork } from './helpers/netns.js'
import { completeFrom, ROOT, TestAgent } from './helpers/agents.js'
import { waitFor } from './helpers/wait.js'

const MESSAGES = 10_000
const dir = mkdtempSync(join(tmpdir(), 'sollol-fuzz-'))
const key = join(dir, 'cluster.key')
writeFileSync(key, generateClusterKey(), { mode: 0o600 })
const model = join(dir, 'model.gguf')
writeTestModel(model, SPLIT_TEST_MODEL)
const network = TestNetwork.create([{}, {}, {}])
const h1 = network.host(0)
const h2 = network.host(1)
const h3 = network.host(2)
const common = ['--rpc-threads', '1', '--ctx-size', '512', '--cluster-key', key]
const coordinator = new TestAgent(h1, dir, [...common, '--model', model, '--max-memory', '30MiB'])
const worker = new TestAgent(h2, dir, [...common, '--max-memory', '60MiB'])
const agents = [coordinator, worker]

after(async () => {
  await Promise.all(agents.map(async (a) => await a.stop()))
  network.destroy()
  rmSync(dir, { recursive: true, force: true })
})

const essentials = (v: ClusterView): unknown => ({
  coordinator: v.coordinator,
  generation: v.plan?.generation,
  server: v.plan?.server.state,
  assignments: v.plan?.assignments.map((a) => [a.peerId, a.layers]),
  members: v.nodes
    .filter((n) => agents.some((a) => a.view()?.self === n.peerId))
    .map((n) => [n.peerId, n.status, n.memoryBudget])
    .sort()
})

test(`${MESSAGES} malformed messages from a rogue key holder change nothing and are counted`, async () => {
  for (const a of agents) a.start()
  const before = await waitFor(
    'a serving plan with both nodes',
    () => {
      const v = coordinator.view()
      return v?.plan?.server.state === 'ready' &&
        v.nodes.length === 2 &&
        worker.view()?.plan?.generation === v.plan.generation &&
        worker.view()?.plan?.server.state === 'ready'
        ? v
        : undefined
    },
    { timeoutMs: 60_000 }
  )
  const snapshot = agents.map((a) => essentials(a.view()!))
  const droppedBefore = agents.map((a) => a.view()!.counters?.dropped ?? 0)

  const targets = agents.map((a) => `/ip4/${a.host.address}/tcp/7490/p2p/${a.view()!.self}`)
  const modelId = before.nodes.find((n) => n.peerId === before.self)?.models[0]?.id
  assert.ok(modelId !== undefined)
  const rogue = await h3.run(process.execPath, [join(ROOT, 'test/dist/helpers/rogue.js'), key, String(MESSAGES), ...targets], {
    env: { SOLLOL_ROGUE_MODEL_ID: modelId },
    cwd: ROOT,
    timeout: 240_000
  })
  assert.equal(rogue.exitCode, 0, String(rogue.stderr))
  const sent = JSON.parse(String(rogue.stdout).trim().split('\n').pop() ?? '{}') as {
    gossip: number
    streams: number
    illegalClaims: number
  }
  assert.ok(sent.gossip >= MESSAGES, `sent ${sent.gossip}`)
  // its messages of another major version (v 99) are not dropped in silence: every agent said so (it was
  // listed as incompatible until its next valid announcement, the illegal claims, showed it speaks ours)
  for (const a of agents) assert.match(a.log(), /a peer speaks another version of the announcements/, a.host.name)
  for (const a of agents) {
    const fuzz = await a.host.run(process.execPath, [join(ROOT, 'test/dist/helpers/http-fuzz.js'), '7491', '450'], { cwd: ROOT })
    assert.equal(fuzz.exitCode, 0, String(fuzz.stderr))
    const counts = JSON.parse(String(fuzz.stdout).trim().split('\n').pop() ?? '{}') as { answered?: number; cut?: number }
    assert.equal((counts.answered ?? 0) + (counts.cut ?? 0), 450, `every request answered or cut: ${JSON.stringify(counts)}`)
    assert.ok((counts.answered ?? 0) > 0, `the API answered malformed requests with an HTTP status: ${JSON.stringify(counts)}`)
  }

  await waitFor(
    `${MESSAGES} drops counted on every agent`,
    () => agents.every((a, i) => (a.view()?.counters?.dropped ?? 0) - (droppedBefore[i] ?? 0) >= MESSAGES),
    { timeoutMs: 60_000 }
  ).catch((err: Error) => {
    throw new Error(
      `${err.message}; rogue sent ${JSON.stringify(sent)}; counters: ${agents.map((a) => JSON.stringify(a.view()?.counters)).join(' | ')}`
    )
  })
  for (const a of agents) {
    const view = a.view()!
    assert.ok(
      (view.counters?.dropReasons.impersonation ?? 0) >= MESSAGES / 12 - 1,
      `impersonations counted on ${a.host.name}: ${JSON.stringify(view.counters?.dropReasons)}`
    )
  }
  for (const a of agents) {
    const c = a.view()!.counters!
    // the rogue introduced invented members: each dialled once (and failed), no more than an answer holds
    const dials = c.introducedDials ?? 0
    assert.ok(dials >= 1 && dials <= MAX_INTRODUCTIONS, `${a.host.name} dialled ${dials} introduced members, at most ${MAX_INTRODUCTIONS}`)
    assert.ok((c.livenessReportsIn ?? 0) > 0, `${a.host.name} received the rogue's liveness reports: ${JSON.stringify(c)}`)
    assert.equal(c.livenessReportsTaken ?? 0, 0, `${a.host.name} took none`)
  }
  assert.deepEqual(
    agents.map((a) => essentials(a.view()!)),
    snapshot,
    'state and plan unchanged'
  )
  assert.match(coordinator.log(), /ignored a coordinator claim from a node that cannot coordinate/)
  const completion = await completeFrom(h3, dir, before.plan!.server.url)
  assert.ok(completion.ok, completion.output)
  console.log(
    `fuzz: ${MESSAGES} gossip messages + ${sent.illegalClaims} illegal claims + ${sent.streams} protocol streams + 900 HTTP requests; drops: ${agents.map((a) => JSON.stringify(a.view()?.counters?.dropReasons)).join(' | ')}`
  )
})
