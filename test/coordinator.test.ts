/**
 * The coordinator end to end: 4 real agents on test hosts, 2 holding a generated model; election, plan,
 * llama-server over the real rpc-servers, assignment gossip, and failover with the invariant that no two
 * llama-servers ever share an rpc-server.
 */
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { SPLIT_TEST_MODEL, writeTestModel } from '@sollol/gguf'
import type { ClusterView } from '@sollol/core'
import { TestNetwork } from './helpers/netns.js'
import { CLI, completeFrom, TestAgent } from './helpers/agents.js'
import { waitFor } from './helpers/wait.js'

let network: TestNetwork
let dir: string
let agents: TestAgent[]
const timings: Record<string, number[]> = {}
const violations: string[] = []
let monitor: NodeJS.Timeout | undefined

/**
 * Cluster llama-servers (port 7492; the one-off calibration runs use other ports) and their --rpc lists,
 * from /proc: every test host shares this machine's pid space.
 */
function llamaServers(): Array<{ pid: number; rpc: string[] }> {
  const found: Array<{ pid: number; rpc: string[] }> = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      if (readFileSync(`/proc/${entry}/comm`, 'utf8').trim() !== 'llama-server') continue
      const args = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0')
      if (args[args.indexOf('--port') + 1] !== '7492') continue
      found.push({ pid: Number(entry), rpc: (args[args.indexOf('--rpc') + 1] ?? '').split(',') })
    } catch {}
  }
  return found
}

/**
 * Never two llama-servers on one rpc-server. Behind tunnels their --rpc lists name local ports, so the
 * check is stronger: never two cluster llama-servers at once (each coordinator runs its on port 7492).
 */
function watchInvariant(): void {
  monitor = setInterval(() => {
    const servers = llamaServers()
    if (servers.length > 1)
      violations.push(
        `${servers.length} cluster llama-servers at once: ${servers.map((s) => `${s.pid} --rpc ${s.rpc.join(',')}`).join('; ')}`
      )
  }, 100)
}

const record = (name: string, ms: number): void => {
  ;(timings[name] ??= []).push(ms)
}

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'sollol-coord-'))
  const model = join(dir, 'model.gguf')
  // 16 layers x 256 dims, f32 (~40 MiB). Budgets: the model holders take 7 layers each, the third node 14,
  // the small one 2: no node holds the model alone, the two holders together neither, so every plan uses
  // a worker without the model, and any three nodes still hold it.
  writeTestModel(model, SPLIT_TEST_MODEL)
  network = TestNetwork.create([{}, {}, {}, {}])
  const common = ['--rpc-threads', '1', '--ctx-size', '512']
  agents = [
    new TestAgent(network.hosts[0]!, dir, [...common, '--model', model, '--max-memory', '34MiB']),
    new TestAgent(network.hosts[1]!, dir, [...common, '--model', model, '--max-memory', '34MiB']),
    new TestAgent(network.hosts[2]!, dir, [...common, '--max-memory', '56MiB']),
    new TestAgent(network.hosts[3]!, dir, [...common, '--max-memory', '20MiB'])
  ]
})

after(async () => {
  clearInterval(monitor)
  await Promise.all(agents.map(async (a) => await a.stop()))
  network.destroy()
  if (process.env.SOLLOL_KEEP_TEST_LOGS === undefined) rmSync(dir, { recursive: true, force: true })
  console.log('coordinator timings (ms):', JSON.stringify(timings))
})

/** Every given agent shows one coordinator, one term and one ready plan generation; returns that view. */
async function agreedAndServing(among: TestAgent[], what: string, timeoutMs: number): Promise<ClusterView> {
  return await waitFor(
    what,
    () => {
      const views = among.map((a) => a.view())
      if (views.some((v) => v === undefined || v.coordinator === null || v.plan === null)) return undefined
      const first = views[0]!
      const same = views.every(
        (v) =>
          v!.coordinator?.peerId === first.coordinator?.peerId &&
          v!.coordinator?.term === first.coordinator?.term &&
          v!.plan?.generation === first.plan?.generation &&
          v!.plan?.server.state === 'ready'
      )
      const everyone = first.nodes.length === among.length
      return same && everyone && first.plan?.server.state === 'ready' ? first : undefined
    },
    { timeoutMs }
  )
}

const agentOf = (peerId: string | undefined): TestAgent =>
  agents.find((a) => a.view()?.self === peerId) ?? assert.fail(`no agent ${peerId}`)

async function completionWorks(url: string, from: TestAgent): Promise<void> {
  const result = await completeFrom(from.host, dir, url)
  assert.ok(result.ok, result.output)
  assert.match(result.output, /"content":/)
}

/** Time from `since` until a completion through the current plan's server succeeds. */
async function untilServing(since: number, among: TestAgent[], from: TestAgent, boundMs: number, what: string): Promise<number> {
  await waitFor(
    what,
    async () => {
      const view = among[0]?.view()
      const url = view?.plan?.server.state === 'ready' ? view.plan.server.url : undefined
      return url !== undefined && (await completeFrom(from.host, dir, url, 3000)).ok
    },
    { timeoutMs: boundMs + 15_000, intervalMs: 200 }
  )
  return Date.now() - since
}

test('one coordinator is elected, every agent agrees on it and the plan, and the plan serves completions', async () => {
  for (const a of agents) a.start()
  watchInvariant()
  const view = await agreedAndServing(agents, 'an elected coordinator serving a plan', 60_000)
  const coordinator = view.coordinator!
  const holders = agents.slice(0, 2).map((a) => a.view()?.self)
  assert.ok(holders.includes(coordinator.peerId), 'the coordinator holds the model')
  const plan = view.plan!
  assert.equal(plan.server.state, 'ready')
  assert.match(plan.server.url, /^http:\/\/10\.213\.0\.\d+:7492$/)
  // Layer ranges: contiguous, all 16 covered, and equal to what llama-server logged.
  const ranges = plan.assignments.map((a) => a.layers).filter((r): r is [number, number] => r !== null)
  assert.equal(
    ranges.reduce((sum, [f, l]) => sum + l - f + 1, 0),
    16
  )
  for (const a of plan.assignments)
    assert.deepEqual(a.actualLayers, a.layers, `${a.peerId}: planned ${a.layers} vs logged ${a.actualLayers}`)
  assert.equal(plan.mismatch, null)
  // every live node that is not used is listed with the reason
  for (const a of agents) {
    const id = a.view()!.self
    if (!plan.assignments.some((x) => x.peerId === id))
      assert.ok(
        plan.excluded.some((x) => x.peerId === id && x.reason.length > 0),
        `${id} left out without a reason`
      )
  }
  assert.equal(plan.assignments.filter((a) => a.output).length, 1)
  // The node offering much less memory gets fewer layers than every other used node.
  const small = plan.assignments.find((a) => a.peerId === agents[3]!.view()?.self)
  const count = (a: { layers: [number, number] | null }): number => (a.layers === null ? 0 : a.layers[1] - a.layers[0] + 1)
  for (const other of plan.assignments)
    if (other !== small)
      assert.ok(count(small ?? { layers: null }) < count(other), `small ${count(small ?? { layers: null })} vs ${count(other)}`)
  // Each agent shows the layers it holds.
  for (const a of agents) {
    const self = a.view()!.nodes.find((n) => n.peerId === a.view()!.self)
    assert.deepEqual(self?.layers ?? null, plan.assignments.find((x) => x.peerId === a.view()!.self)?.layers ?? null)
  }
  await completionWorks(plan.server.url, agents[3]!)
  // `sollol-agent plan` explains the split without starting anything (asked on the coordinator's host)
  const coordinatorAgent = agentOf(coordinator.peerId)
  const dry = await coordinatorAgent.host.run(process.execPath, [CLI, 'plan', '--json'])
  assert.equal(dry.exitCode, 0, String(dry.stderr))
  const dryPlan = JSON.parse(String(dry.stdout)) as { nodes: Array<{ layerCount: number; why: string }>; tensorSplit: number[] }
  assert.deepEqual(dryPlan.tensorSplit, plan.tensorSplit)
  assert.ok(dryPlan.nodes.every((n) => n.why.length > 0))
  const table = await coordinatorAgent.host.run(process.execPath, [CLI, 'plan'])
  assert.match(String(table.stdout), /plan for model\.gguf \(context 512 tokens\)/)
  assert.match(String(table.stdout), /llama-server --rpc 10\.213\.0\./)
  // on a node without the model: a clear error, and with --model FILE it plans from the file
  const noModel = await agents[3]!.host.run(process.execPath, [CLI, 'plan'])
  assert.equal(noModel.exitCode, 1)
  assert.match(String(noModel.stderr), /holds no model/)
  const withFile = await agents[3]!.host.run(process.execPath, [CLI, 'plan', '--model', join(dir, 'model.gguf'), '--ctx-size', '512'])
  assert.equal(withFile.exitCode, 0, String(withFile.stderr))

  // status from any host shows the same coordinator and term
  for (const a of agents) {
    const status = await a.statusJson()
    assert.deepEqual(status.coordinator, coordinator)
  }
  assert.deepEqual(violations, [])
})

test('failover: a worker dies and returns, then the coordinator dies and returns; one llama-server at a time', async () => {
  let view = await agreedAndServing(agents, 'serving before the failures', 30_000)
  const coordinator = agentOf(view.coordinator?.peerId)
  // the worker: a node without the model that holds layers in the plan (so its death really breaks the server)
  const inPlan = (a: TestAgent): boolean => view.plan!.assignments.some((x) => x.peerId === a.view()?.self && x.layers !== null)
  const worker = agents.slice(2).find(inPlan) ?? agents[2]!
  const observer = agents[3]!
  const survivors = (): TestAgent[] => agents.filter((a) => a !== worker && a !== coordinator)

  // 1. a worker dies: a new plan without it
  // ids captured before the kill: the helper forgets a killed agent's view
  const killedWorkerId = worker.view()!.self
  let t0 = Date.now()
  worker.signal('SIGKILL')
  await worker.exited()
  record(
    'workerKillToServing',
    await untilServing(t0, [coordinator, ...survivors()], observer, 15_000, 'serving again after a worker died')
  )
  view = await agreedAndServing([coordinator, ...survivors()], 'agreement without the worker', 20_000)
  assert.ok(!view.plan!.assignments.some((a) => a.peerId === killedWorkerId), 'the dead worker is out of the plan')
  assert.ok(!view.nodes.some((n) => n.peerId === killedWorkerId), 'and out of the view')

  // 2. it returns (same identity): back in every view and weighed by the coordinator: in the plan, or left
  // out with the reason (a re-plan happens only when the faster plan pays for its reload, so whether a
  // returning node is worth a reload depends on the measured speeds and RTTs)
  t0 = Date.now()
  worker.start()
  const workerId = await waitFor('the worker to answer again', () => worker.view()?.self)
  assert.equal(workerId, killedWorkerId, 'same identity')
  view = await waitFor(
    'the returned worker in the plan, or left out of it with a reason',
    async () => {
      const v = await agreedAndServing(agents, 'the worker back', 30_000)
      if (v.plan!.assignments.some((a) => a.peerId === workerId)) return v
      // not re-planned (yet): the coordinator's own planner must have weighed it (`sollol-agent plan`)
      const dry = await agentOf(v.coordinator!.peerId).host.run(process.execPath, [CLI, 'plan', '--json'], { reject: false })
      if (dry.exitCode !== 0) return undefined
      const p = JSON.parse(String(dry.stdout)) as { nodes: Array<{ peerId: string }>; unused: Array<{ peerId: string; why: string }> }
      return p.nodes.some((n) => n.peerId === workerId) || p.unused.some((u) => u.peerId === workerId && u.why.length > 0) ? v : undefined
    },
    { timeoutMs: 30_000 }
  )
  record('workerReturnToReplanned', Date.now() - t0)
  // a re-plan that pays may start right after the check above: completions may pause for its reload
  await untilServing(Date.now(), agents, observer, 30_000, 'serving with the worker back')
  view = await agreedAndServing(agents, 'agreement with the worker back', 30_000)

  // 3. the coordinator dies: the other model holder takes over with a higher term
  const oldTerm = view.coordinator!.term
  const killedCoordinatorId = coordinator.view()!.self
  assert.equal(view.coordinator!.peerId, killedCoordinatorId)
  t0 = Date.now()
  coordinator.signal('SIGKILL')
  await coordinator.exited()
  const rest = agents.filter((a) => a !== coordinator)
  record('coordinatorKillToServing', await untilServing(t0, rest, observer, 20_000, 'serving again after the coordinator died'))
  view = await agreedAndServing(rest, 'a new coordinator', 20_000)
  assert.ok(view.coordinator!.term > oldTerm, 'a higher term')
  assert.notEqual(view.coordinator!.peerId, killedCoordinatorId)

  // 4. the old coordinator returns (same identity): the incumbent keeps the role, no second llama-server
  const newCoordinator = view.coordinator!
  coordinator.start()
  view = await agreedAndServing(agents, 'everyone back', 60_000)
  assert.deepEqual(view.coordinator, newCoordinator, 'the incumbent keeps the role when the old coordinator returns')
  await completionWorks(view.plan!.server.url, observer)
  assert.deepEqual(violations, [], 'never two llama-servers on one rpc-server')
  assert.ok(llamaServers().length <= 1)
})
