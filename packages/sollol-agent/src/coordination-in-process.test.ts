/**
 * The coordination layer over real meshes, three of them in one process over libp2p's in-memory transport (no root, no
 * network namespaces, no llama.cpp): election, fencing and take-over, end to end in seconds. Two agents hold
 * the model; none has a llama-server binary, so a coordinator's starts fail and back off, which is all this
 * test needs: it checks who coordinates, in which term, and who is fenced for it. The network-namespace
 * suite runs the same code as agent processes with real llama.cpp.
 * Waits are for conditions with a deadline (libp2p nodes, not pure logic).
 */
import { after, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { FAST_ELECTION_TIMINGS, IN_PROCESS_MESH_TIMINGS, type ModelRef } from '@sollol/core'
import { DEFAULT_TEST_MODEL, writeTestModel } from '@sollol/gguf'
import { LAN_TIMINGS, type LlamaBinaries, type Logger } from '@sollol/llama-cpp'
import { Mesh } from '@sollol/mesh'
import { modelRef } from './capacity.js'
import { Coordination, LAN_COORDINATION_TIMINGS } from './coordinator.js'

const TIMINGS = IN_PROCESS_MESH_TIMINGS
const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {}, child: () => quiet } as unknown as Logger

interface Node {
  readonly name: string
  readonly mesh: Mesh
  readonly coordination: Coordination
  /** Every fence this node's rpc-server got: `term/coordinator`. */
  readonly fences: string[]
}

const dir = mkdtempSync(join(tmpdir(), 'sollol-coordination-in-process-'))
const nodes: Node[] = []
after(async () => {
  for (const n of nodes) {
    await n.coordination.stop()
    await n.mesh.stop()
  }
  rmSync(dir, { recursive: true, force: true })
})

async function until<T>(what: string, check: () => T | undefined, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = check()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; ${describeNodes()}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

async function startNode(name: string, model: { path: string; ref: ModelRef } | undefined, bootstrap: string[]): Promise<Node> {
  const fences: string[] = []
  // nothing to start: the coordinator's llama-server starts fail (and back off)
  const binaries: LlamaBinaries = {
    rpcServer: join(dir, 'no-rpc-server'),
    llamaServer: join(dir, 'no-llama-server'),
    version: 'test',
    source: 'explicit'
  }
  // the mesh describes this node with what its coordination believes, and the coordination uses the mesh
  const late: { coordination?: Coordination } = {}
  const mesh: Mesh = new Mesh({
    cluster: 'inproc-coordination',
    privateKey: await generateKeyPair('Ed25519'),
    transport: 'memory',
    port: 0,
    mdns: false,
    bootstrap,
    timings: TIMINGS,
    logger: quiet,
    describeSelf: () => ({
      agentVersion: '0.1.0',
      hostname: name,
      rpc: {
        host: '127.0.0.1',
        port: 1,
        protocol: '3.0.0',
        state: 'ready',
        llamaBuild: 'test',
        servingTerm: late.coordination?.servingTerm ?? 0,
        access: 'gated'
      },
      devices: [],
      memoryBudget: 2 ** 30,
      cpuThreads: 1,
      models: model !== undefined ? [model.ref] : [],
      canCoordinate: model !== undefined,
      apiPort: null,
      speed: { secondsPerGiB: 1, measuredAt: new Date(0).toISOString(), method: 'given' },
      ...(late.coordination?.belief() ?? { coordinator: null, plan: null })
    })
  })
  const coordination = new Coordination({
    mesh,
    binaries,
    modelPath: model?.path,
    serverHost: '127.0.0.1',
    serverBind: '127.0.0.1',
    serverPort: 1,
    apiToken: undefined,
    contextSize: 256,
    threads: 1,
    electionTimings: FAST_ELECTION_TIMINGS,
    timings: LAN_COORDINATION_TIMINGS,
    supervisorTimings: LAN_TIMINGS,
    fence: async (term, coordinator) => {
      fences.push(`${term}/${coordinator}`)
    },
    logger: quiet,
    now: () => performance.now()
  })
  late.coordination = coordination
  await mesh.start()
  coordination.start()
  const node = { name, mesh, coordination, fences }
  nodes.push(node)
  return node
}

/** What each node believes, for a failure message that explains itself. */
function describeNodes(): string {
  return nodes
    .map((n) => {
      const members = n.mesh.members().map((m) => `${m.announcement.peerId.slice(-6)}:${m.status}`)
      const snap = n.mesh.snapshot()
      return `${n.name} (${n.mesh.peerId.slice(-6)}): ${snap.discovery.connectedPeers} peers connected, ${snap.counters.introducedDials} introduced dialled, coordinator ${coordinatorOf(n)?.slice(-6)} term ${termOf(n)}, members [${members.join(' ')}], fences [${n.fences.map((f) => f.replace(/\/.*(.{6})$/, '/$1')).join(' ')}]`
    })
    .join('; ')
}

const coordinatorOf = (n: Node): string | undefined => n.coordination.belief().coordinator?.peerId
const termOf = (n: Node): number => n.coordination.election.currentTerm

test('three agents in one process: one coordinator among the model holders, every one fenced for its term; its loss hands the role to the other holder in the next term', async () => {
  const path = join(dir, 'model.gguf')
  writeTestModel(path, DEFAULT_TEST_MODEL)
  const model = { path, ref: await modelRef(path) }
  const a = await startNode('holder-a', model, [])
  const seed = [`${a.mesh.announcement().addresses[0]}/p2p/${a.mesh.peerId}`]
  const b = await startNode('holder-b', model, seed)
  const worker = await startNode('worker', undefined, seed)
  const holders = new Set([a.mesh.peerId, b.mesh.peerId])

  const first = await until(
    'every node names the same coordinator, a model holder, in the same term',
    () => {
      const c = coordinatorOf(a)
      return c !== undefined && holders.has(c) && nodes.every((n) => coordinatorOf(n) === c && termOf(n) === termOf(a))
        ? { coordinator: c, term: termOf(a) }
        : undefined
    },
    20_000
  )
  assert.ok(first.term >= 1)
  // b and the worker joined through a alone: a's introductions connect them, so a's loss leaves them a pair
  await until(
    'every node connected to both others',
    () => (nodes.every((n) => n.mesh.snapshot().discovery.connectedPeers === 2) ? true : undefined),
    5000
  )
  const key = `${first.term}/${first.coordinator}`
  await until(
    'every node fenced its rpc-server for the coordinator of that term',
    () => (nodes.every((n) => n.fences.includes(key)) ? true : undefined),
    10_000
  )
  // it cannot serve (no llama-server here) but keeps the role: a failed start is not a reason to step down
  const coordinator = nodes.find((n) => n.mesh.peerId === first.coordinator) as Node
  const other = coordinator === a ? b : a

  const beforeLoss = describeNodes()
  const lost = performance.now()
  await coordinator.coordination.stop()
  await coordinator.mesh.stop()
  nodes.splice(nodes.indexOf(coordinator), 1)
  const second = await until(
    'the other holder coordinates in a later term, and the worker follows it',
    () => {
      const c = coordinatorOf(other)
      return c === other.mesh.peerId && coordinatorOf(worker) === c && termOf(worker) === termOf(other) && termOf(other) > first.term
        ? { term: termOf(other), seconds: (performance.now() - lost) / 1000 }
        : undefined
    },
    15_000
  ).catch((err: Error) => {
    throw new Error(`${err.message}; before the loss: ${beforeLoss}`)
  })
  assert.equal(second.term, first.term + 1, 'one term later: one claim, no contest')
  await until(
    'the worker and the new coordinator fenced for the new term',
    () => ([worker, other].every((n) => n.fences.includes(`${second.term}/${other.mesh.peerId}`)) ? true : undefined),
    10_000
  )
  console.log(`in-process take-over: term ${first.term} -> ${second.term} after ${second.seconds.toFixed(2)} s`)
})
