/**
 * A rolling upgrade with the real previous release: the commit named in test/previous-release.json is built
 * in a temp dir and its agents run beside this release's on test hosts. Mid-upgrade (two agents of the
 * previous release, one of this one, both releases holding the model) they must form one cluster, plan the
 * model across both releases and serve through either one's API; and when the coordinator is killed, the
 * model holder of the other release takes over and serves (the election and fencing agree across releases).
 */
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { SPLIT_TEST_MODEL, writeTestModel } from '@sollol/gguf'
import type { ClusterView } from '@sollol/core'
import { TestNetwork } from './helpers/netns.js'
import { completeFrom, TestAgent } from './helpers/agents.js'
import { buildRelease, haveCommit, previousRelease, removeRelease, type Release } from './helpers/release.js'
import { llamaBinaries } from './helpers/llama.js'
import { waitFor } from './helpers/wait.js'

const dir = mkdtempSync(join(tmpdir(), 'sollol-previous-'))
const model = join(dir, 'model.gguf')
writeTestModel(model, SPLIT_TEST_MODEL)
const network = TestNetwork.create([{}, {}, {}])
// no agent can hold the model alone, so a plan needs two of the three; speeds given, so that the plan does
// not hang on three first-start measurements on two busy cores. This release's holder is given as the
// fastest, so every plan fills it first: with equal speeds, which two agents hold layers came down to
// peer-id tie-breaks, and a plan over the previous release alone made the test fail at random.
const common = ['--rpc-threads', '1', '--ctx-size', '256', '--max-memory', '48MiB']
const slow = ['--rpc-speed', '2']
const fast = ['--rpc-speed', '1']
let release: Release
let agents: TestAgent[] = []
const record = previousRelease()
const available = haveCommit(record.commit)

before(() => {
  if (!available) return
  const started = Date.now()
  release = buildRelease()
  console.log(
    `previous release ${release.version} (${release.commit.slice(0, 12)}) built in ${((Date.now() - started) / 1000).toFixed(1)} s`
  )
})

after(async () => {
  await Promise.all(agents.map(async (a) => await a.stop()))
  network.destroy()
  if (available && release !== undefined) removeRelease(release)
  if (process.env.SOLLOL_KEEP_TEST_LOGS === undefined) rmSync(dir, { recursive: true, force: true })
})

const serving = (v: ClusterView | undefined, n: number): ClusterView | undefined =>
  v?.plan?.server.state === 'ready' && v.nodes.length === n && (v.incompatible ?? []).length === 0 ? v : undefined

test('agents of the previous release and of this one form one cluster, serve, and hand over the coordinator role', async (t) => {
  if (!available) {
    console.log(`SKIPPED: the previous release's commit ${record.commit} is not in this clone (shallow?) and could not be fetched`)
    t.skip(`previous release ${record.commit} not in this clone`)
    return
  }
  // the previous release keys its llama.cpp cache entry its own way: it is given this checkout's build
  const binDir = dirname((await llamaBinaries()).rpcServer)
  const old = [...common, ...slow, '--llama-bin-dir', binDir]
  const oldHolder = new TestAgent(network.host(0), dir, [...old, '--model', model], true, release.cli)
  const newHolder = new TestAgent(network.host(1), dir, [...common, ...fast, '--model', model])
  const oldWorker = new TestAgent(network.host(2), dir, old, true, release.cli)
  agents = [oldHolder, newHolder, oldWorker]
  for (const a of agents) a.start()

  const view = await waitFor(
    'every agent, of either release, sees the same serving plan over all three',
    () => {
      const views = agents.map((a) => serving(a.view(), 3))
      if (views.some((v) => v === undefined)) return undefined
      const generations = new Set(views.map((v) => `${v!.coordinator?.peerId}/${v!.plan?.generation}`))
      return generations.size === 1 ? views[1] : undefined
    },
    {
      timeoutMs: 180_000,
      explain: () => JSON.stringify(agents.map((a) => ({ nodes: a.view()?.nodes.length, plan: a.view()?.plan?.server })))
    }
  )
  const ids = agents.map((a) => a.view()!.self)
  const withLayers = new Set(view.plan!.assignments.filter((a) => a.layers !== null).map((a) => a.peerId))
  assert.ok(withLayers.has(ids[1]!), 'this release holds layers')
  assert.ok(withLayers.has(ids[0]!) || withLayers.has(ids[2]!), 'the previous release holds layers')
  for (const a of agents) {
    const drops = a.view()!.counters?.dropReasons ?? {}
    assert.equal(drops.invalid ?? 0, 0, `${a.host.name} dropped announcements: ${JSON.stringify(drops)}`)
  }
  // the OpenAI API of an agent of each release answers (one forwards to the other's llama-server)
  for (const [agent, host] of [
    [oldWorker, network.host(2)],
    [newHolder, network.host(1)]
  ] as const) {
    const answer = await completeFrom(host, dir, `http://127.0.0.1:7491`)
    assert.ok(answer.ok, `${agent.host.name}: ${answer.output}`)
  }

  // the coordinator goes; the model holder of the other release takes over
  const coordinatorId = view.coordinator!.peerId
  const coordinator = agents.find((a) => a.view()?.self === coordinatorId)
  assert.ok(coordinator === oldHolder || coordinator === newHolder, `the coordinator ${coordinatorId} holds the model`)
  const successor = coordinator === oldHolder ? newHolder : oldHolder
  const successorId = successor.view()!.self
  const killedAt = Date.now()
  coordinator.signal('SIGKILL')
  const after = await waitFor(
    'the other release takes over and serves',
    () => {
      const v = serving(successor.view(), 2)
      return v?.coordinator?.peerId === successorId && serving(oldWorker.view(), 2)?.coordinator?.peerId === successorId ? v : undefined
    },
    {
      timeoutMs: 120_000,
      explain: () => JSON.stringify({ successor: successor.view()?.plan?.server, coordinator: successor.view()?.coordinator })
    }
  )
  const answer = await completeFrom(network.host(2), dir, `http://127.0.0.1:7491`)
  assert.ok(answer.ok, answer.output)
  console.log(
    `previous release ${release.version} + this one: coordinator ${coordinator === oldHolder ? 'previous' : 'this'} release, ` +
      `killed; ${successor === oldHolder ? 'previous' : 'this'} release serving after ${((Date.now() - killedAt) / 1000).toFixed(1)} s ` +
      `(term ${after.coordinator?.term})`
  )
})
