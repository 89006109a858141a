/**
 * Whole agents, the wiring included, in one process: three (then four) `Agent`s over libp2p's in-memory
 * transport with fast timings, each with its real rpc-server behind a mesh tunnel, and the coordinator's
 * real llama-server. No root, no network namespaces: election, serving through another agent's OpenAI
 * API, a join, and the coordinator's loss (take-over in the next term, the workers' rpc-servers kept) in
 * seconds. The network-namespace suite runs the same agents as processes on separate hosts.
 *
 * It needs llama.cpp (`sollol-agent setup`): `npm test` sets it up first and requires it here
 * (SOLLOL_REQUIRE_LLAMA=1); `npm run test:unit` on a machine without it skips this file and says why.
 * Waits are for conditions with a deadline (real processes, not pure logic).
 */
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { FAST_ELECTION_TIMINGS, IN_PROCESS_MESH_TIMINGS, type ClusterView } from '@sollol/core'
import { SPLIT_TEST_MODEL, writeTestModel } from '@sollol/gguf'
import { freePort, type LlamaBinaries, type Logger } from '@sollol/llama-cpp'
import { binariesForTests } from './llama-for-tests.js'
import { loadOrCreateIdentity } from '@sollol/mesh'
import { Agent } from './agent.js'
import { FAST_COORDINATION_TIMINGS } from './coordinator.js'

const dir = mkdtempSync(join(tmpdir(), 'sollol-agent-in-process-'))
const MIB = 1024 ** 2

interface Running {
  readonly name: string
  readonly agent: Agent
  readonly peerId: string
  readonly apiPort: number
  readonly rpcPort: number
}

const running: Running[] = []
/** warn and error lines of every agent, printed when a wait fails */
const log: string[] = []
const recorder = (name: string): Logger => {
  const line =
    (level: string) =>
    (a: Record<string, unknown> | string, b?: string): void => {
      log.push(`${name} ${level}: ${typeof a === 'string' ? a : `${b ?? ''} ${JSON.stringify(a)}`}`)
    }
  const logger: Logger = { debug() {}, info() {}, warn: line('warn'), error: line('error'), child: () => logger }
  return logger
}

let binaries: LlamaBinaries | undefined
let missing: string | undefined
before(async () => {
  ;({ binaries, missing } = await binariesForTests())
})

after(async () => {
  await Promise.all(running.map(async (r) => await r.agent.stop()))
  rmSync(dir, { recursive: true, force: true })
})

async function until<T>(what: string, check: () => T | undefined | Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await check()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}\n${log.slice(-30).join('\n')}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

/** An agent's data dir with its identity made ahead, so the others can name it in their bootstrap. */
async function prepare(name: string): Promise<{ dataDir: string; peerId: string }> {
  const dataDir = join(dir, name)
  const { key } = await loadOrCreateIdentity(dataDir)
  // an Ed25519 key's text is its peer id
  return { dataDir, peerId: key.publicKey.toString() }
}

async function agentFor(name: string, options: { model?: string; maxMemory: number; bootstrap: string[] }): Promise<Running> {
  const { dataDir, peerId } = await prepare(name)
  const [apiPort, rpcPort, serverPort] = [await freePort(), await freePort(), await freePort()]
  const agent = new Agent({
    cluster: 'agent-in-process',
    dataDir,
    p2pTransport: 'memory',
    p2pPort: 0,
    apiHost: '127.0.0.1',
    apiPort,
    rpcHost: '127.0.0.1',
    // only through the mesh (here: in memory), so fencing cuts tunnels and keeps the rpc-server
    rpcAccess: 'tunnel',
    rpcPort,
    rpcThreads: 1,
    rpcCache: true,
    maxMemory: options.maxMemory,
    ...(options.model !== undefined ? { model: options.model } : {}),
    serverPort,
    contextSize: 512,
    recalibrate: false,
    // a given speed: no measurement (every agent equal), the plan follows the budgets
    rpcSpeed: 1,
    bootstrap: options.bootstrap,
    mdns: false,
    binaries: binaries!,
    timings: IN_PROCESS_MESH_TIMINGS,
    electionTimings: FAST_ELECTION_TIMINGS,
    coordinationTimings: FAST_COORDINATION_TIMINGS,
    logger: recorder(name)
  })
  const r = { name, agent, peerId, apiPort, rpcPort }
  running.push(r)
  return r
}

/** Every given agent names the same coordinator and term, and the same ready plan covering all of them. */
const agreed = (among: Running[]): ClusterView | undefined => {
  const views = among.map((r) => r.agent.view())
  const first = views[0]!
  const same = views.every(
    (v) =>
      v.coordinator !== null &&
      v.coordinator.peerId === first.coordinator?.peerId &&
      v.coordinator.term === first.coordinator.term &&
      v.plan?.generation === first.plan?.generation &&
      v.plan?.server.state === 'ready' &&
      v.nodes.length === among.length
  )
  return same ? first : undefined
}

/** A completion through an agent's own OpenAI API (the agent forwards it to the coordinator's llama-server). */
async function completes(r: Running): Promise<true | undefined> {
  try {
    const res = await fetch(`http://127.0.0.1:${r.apiPort}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'hello', max_tokens: 2 }),
      signal: AbortSignal.timeout(5000)
    })
    const body = (await res.json()) as { choices?: unknown[] }
    return res.ok && Array.isArray(body.choices) ? true : undefined
  } catch {
    return undefined
  }
}

/** pid of the rpc-server listening on `port` (its command line names it). */
function rpcServerPid(port: number): number | undefined {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    let args: string[]
    try {
      args = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0')
    } catch {
      continue
    }
    if (/rpc-server$/.test(args[0] ?? '') && args[args.indexOf('--port') + 1] === String(port)) return Number(entry)
  }
  return undefined
}

test('agents in one process: elected, serving through any agent, a join, the coordinator lost and taken over with the workers kept', async (t) => {
  if (binaries === undefined) {
    t.skip(`llama.cpp is not set up here (${missing}); run \`npx sollol-agent setup\``)
    return
  }
  const model = join(dir, 'model.gguf')
  // 16 layers x 256 dims, f32 (~40 MiB): no agent holds it alone, any two do
  writeTestModel(model, SPLIT_TEST_MODEL)
  const first = await prepare('holder-a')
  const seed = [`/memory/${first.peerId}/p2p/${first.peerId}`]
  const started = Date.now()
  // started together, as users do
  const three = await Promise.all([
    agentFor('holder-a', { model, maxMemory: 34 * MIB, bootstrap: [] }),
    agentFor('holder-b', { model, maxMemory: 34 * MIB, bootstrap: seed }),
    agentFor('worker', { maxMemory: 56 * MIB, bootstrap: seed })
  ])
  await Promise.all(three.map(async (r) => await r.agent.start()))
  assert.deepEqual(
    three.map((r) => r.agent.peerId),
    three.map((r) => r.peerId)
  )

  const view = await until('one coordinator, one term and one ready plan in every view', () => agreed(three), 60_000)
  const servingMs = Date.now() - started
  const holders = three.slice(0, 2).map((r) => r.peerId)
  assert.ok(holders.includes(view.coordinator!.peerId), 'a model holder coordinates')
  const ranges = view.plan!.assignments.flatMap((a) => (a.layers !== null ? [a.layers] : []))
  assert.equal(
    ranges.reduce((sum, [from, to]) => sum + to - from + 1, 0),
    SPLIT_TEST_MODEL.layers,
    'every layer planned'
  )
  assert.ok(ranges.length >= 2, 'no agent holds the model alone')
  const coordinator = three.find((r) => r.peerId === view.coordinator!.peerId)!
  const worker = three[2]!
  // through the worker's API: its agent tunnels the request over the mesh to the coordinator's llama-server
  await until('a completion through the worker agent', async () => await completes(worker), 20_000)

  // a join: the newcomer is in every view, and the cluster keeps serving
  const joining = await agentFor('late-worker', { maxMemory: 20 * MIB, bootstrap: seed })
  const joinStarted = Date.now()
  await joining.agent.start()
  const four = [...three, joining]
  await until(
    'the newcomer in every view',
    () => (four.every((r) => r.agent.view().nodes.some((n) => n.peerId === joining.peerId)) ? true : undefined),
    15_000
  )
  const joinMs = Date.now() - joinStarted
  await until('serving with four agents', () => agreed(four), 30_000)
  await until('a completion through the newcomer', async () => await completes(joining), 20_000)

  // the coordinator's loss: the other holder takes over in the next term; workers' rpc-servers are kept
  const rest = four.filter((r) => r !== coordinator)
  const workers = rest.filter((r) => !holders.includes(r.peerId))
  const pids = workers.map((r) => rpcServerPid(r.rpcPort))
  assert.ok(
    pids.every((p) => p !== undefined),
    `every worker runs its rpc-server (${pids.join(',')})`
  )
  const term = view.coordinator!.term
  const lost = Date.now()
  await coordinator.agent.stop()
  running.splice(running.indexOf(coordinator), 1)
  const taken = await until('the other holder serving in a later term', () => agreed(rest), 30_000)
  assert.equal(
    taken.coordinator!.peerId,
    holders.find((h) => h !== coordinator.peerId),
    'the other model holder'
  )
  assert.equal(taken.coordinator!.term, term + 1, 'one term later: one claim')
  await until('a completion through a worker after the take-over', async () => await completes(workers[0]!), 20_000)
  const failoverMs = Date.now() - lost
  assert.deepEqual(
    workers.map((r) => rpcServerPid(r.rpcPort)),
    pids,
    'the new term left every healthy rpc-server running (same pid): the fence cut the old tunnels'
  )
  console.log(
    `agents in process: serving ${servingMs} ms after a start together; a newcomer in every view after ${joinMs} ms; coordinator stopped -> served in term ${term + 1} after ${failoverMs} ms, rpc-servers kept (${pids.join(',')})`
  )
})
