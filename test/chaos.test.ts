/**
 * Chaos on the test hosts with real llama.cpp: random faults (SIGKILL, SIGSTOP/SIGCONT of an agent, of
 * an rpc-server, of llama-server; a host's link down and up), each followed by recovery, with the
 * invariants watched throughout. SOLLOL_CHAOS_EVENTS sets the number of events (CI runs fewer than the
 * documented long run); SOLLOL_CHAOS_SEED replays a sequence.
 */
import { after, test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { SPLIT_TEST_MODEL, seededRandom, writeTestModel } from '@sollol/gguf'
import { pidsOf, TestNetwork, type TestHost } from './helpers/netns.js'
import { completeFrom, TestAgent } from './helpers/agents.js'
import { waitFor } from './helpers/wait.js'

const EVENTS = Number(process.env.SOLLOL_CHAOS_EVENTS ?? 8)
const SEED = Number(process.env.SOLLOL_CHAOS_SEED ?? 2026)
const dir = mkdtempSync(join(tmpdir(), 'sollol-chaos-'))
const model = join(dir, 'model.gguf')
writeTestModel(model, SPLIT_TEST_MODEL)
// As in the coordinator test: any three of the four nodes hold the model, two of them can coordinate.
const network = TestNetwork.create([{}, {}, {}, {}])
const common = ['--rpc-threads', '1', '--ctx-size', '512']
const agents = network.hosts.map(
  (host, i) =>
    new TestAgent(host, dir, [
      ...common,
      '--max-memory',
      i < 2 ? '34MiB' : i === 2 ? '56MiB' : '20MiB',
      ...(i < 2 ? ['--model', model] : [])
    ])
)
const hostOfAddress = new Map(network.hosts.map((h) => [h.address, h]))
const violations: string[] = []
const report: Array<{ event: string; target: string; recoveryMs: number; backMs: number }> = []

after(async () => {
  await Promise.all(agents.map(async (a) => await a.stop()))
  network.destroy()
  if (process.env.SOLLOL_KEEP_TEST_LOGS === undefined) rmSync(dir, { recursive: true, force: true })
  else console.log(`chaos logs: ${dir}`)
  console.log(
    `chaos (seed ${SEED}, ${report.length} events):\n${report.map((r) => `  ${r.event} ${r.target}: serving again ${r.recoveryMs} ms after the fault, all nodes back ${r.backMs} ms after the repair`).join('\n')}`
  )
})

/**
 * Invariant: never two llama-servers attached to one rpc-server. An attachment is a TCP connection to
 * port 50052 that is established at both ends: seen from the llama-server's host (its socket) and from
 * the rpc-server's host (the gate's or the rpc-server's socket). One end alone can be stale: a host whose
 * link is down still lists a connection the other side already cut.
 */
function checkAttachments(): void {
  const clientEnds = new Map<string, Set<string>>() // "client->server" -> llama-server ids
  const serverEnds = new Set<string>() // "client->server"
  for (const host of network.hosts) {
    let out = ''
    try {
      out = execFileSync('ip', ['netns', 'exec', host.name, 'ss', '-tnpH', 'state', 'established'], { encoding: 'utf8' })
    } catch {
      continue
    }
    const hostOf = (address: string): string => {
      const ip = address.slice(0, address.lastIndexOf(':'))
      return ip === '127.0.0.1' ? host.name : (hostOfAddress.get(ip)?.name ?? ip)
    }
    for (const line of out.split('\n')) {
      const fields = line.trim().split(/\s+/)
      const local = fields[2]
      const peer = fields[3]
      if (local === undefined || peer === undefined) continue
      const pid = /"llama-server",pid=(\d+)/.exec(line)?.[1]
      if (pid !== undefined && peer.endsWith(':50052')) {
        const key = `${host.name}->${hostOf(peer)}`
        const set = clientEnds.get(key) ?? new Set<string>()
        set.add(`${host.name}/${pid}`)
        clientEnds.set(key, set)
      }
      if (local.endsWith(':50052')) serverEnds.add(`${hostOf(peer)}->${host.name}`)
    }
  }
  const users = new Map<string, Set<string>>()
  for (const [key, llamas] of clientEnds) {
    if (!serverEnds.has(key)) continue
    const server = key.split('->')[1] ?? ''
    const set = users.get(server) ?? new Set<string>()
    for (const l of llamas) set.add(l)
    users.set(server, set)
  }
  for (const [rpcServer, set] of users) if (set.size > 1) violations.push(`rpc-server of ${rpcServer} used by ${[...set].join(' and ')}`)
}

/** Invariant: no agent acts on an older term (per agent process, the term it shows never goes down). */
const highestTerm = new Map<TestAgent, number>()
function checkTerms(): void {
  for (const a of agents) {
    const term = a.view()?.coordinator?.term
    if (term === undefined) continue
    const seen = highestTerm.get(a) ?? 0
    if (term < seen) violations.push(`${a.host.name} went back from term ${seen} to ${term}`)
    highestTerm.set(a, Math.max(seen, term))
  }
}

/** Time until `among` agree on one serving plan and a completion through it succeeds from `observer`. */
async function serving(
  among: TestAgent[],
  boundMs: number,
  what: string,
  observer: TestHost = among[among.length - 1]!.host
): Promise<number> {
  const started = Date.now()
  await waitFor(
    what,
    async () => {
      const views = among.map((a) => a.view())
      const first = views[0]
      if (first === undefined || first.plan?.server.state !== 'ready') return false
      const agreed = views.every(
        (v) =>
          v !== undefined &&
          v.coordinator?.term === first.coordinator?.term &&
          v.coordinator?.peerId === first.coordinator?.peerId &&
          v.plan?.generation === first.plan?.generation
      )
      if (!agreed || first.nodes.length !== among.length) return false
      return (await completeFrom(observer, dir, first.plan.server.url, 4000)).ok
    },
    { timeoutMs: boundMs, intervalMs: 250 }
  )
  return Date.now() - started
}

function coordinatorAgent(): TestAgent {
  const id = agents.map((a) => a.view()?.coordinator?.peerId).find((p) => p !== undefined)
  return agents.find((a) => a.view()?.self === id) ?? agents[0]!
}

/** Invariant: a gone node's entry does not outlive the membership bound in any other view. */
/** Peer ids as first seen: an agent keeps its identity across restarts, and the helper forgets a killed agent's view. */
const ids = new Map<TestAgent, string>()
function idOf(agent: TestAgent): string {
  const seen = agent.view()?.self
  if (seen !== undefined) ids.set(agent, seen)
  const id = ids.get(agent)
  assert.ok(id !== undefined, `${agent.host.name}: peer id never seen`)
  return id
}

/** `id` is read before the fault (idOf). */
async function expectLeft(target: TestAgent, id: string, others: TestAgent[], boundMs: number, cause: string): Promise<void> {
  await waitFor(`${target.host.name} to leave every view`, () => others.every((a) => !a.peers().includes(id)), {
    timeoutMs: boundMs
  }).catch(() => violations.push(`${target.host.name}: still listed ${boundMs / 1000} s after ${cause}`))
}

const EVENT_KINDS = ['agent-kill', 'agent-freeze', 'rpc-kill', 'rpc-freeze', 'llama-kill', 'llama-freeze', 'link-flap'] as const

test(`chaos: ${EVENTS} random faults; the cluster recovers after each and the invariants hold`, async () => {
  for (const a of agents) a.start()
  const monitor = setInterval(() => {
    checkAttachments()
    checkTerms()
  }, 300)
  try {
    await serving(agents, 90_000, 'the cluster to serve')
    const rand = seededRandom(SEED)
    for (let i = 0; i < EVENTS; i++) {
      const kind = EVENT_KINDS[Math.floor(rand() * EVENT_KINDS.length)]!
      const target = kind.startsWith('llama') ? coordinatorAgent() : agents[Math.floor(rand() * agents.length)]!
      const others = agents.filter((a) => a !== target)
      const t0 = Date.now()
      let recoveryMs = 0
      switch (kind) {
        case 'agent-kill': {
          const id = idOf(target)
          target.signal('SIGKILL')
          await target.exited()
          // no child outlives its agent
          await waitFor(
            `${target.host.name}: children gone with the agent`,
            () => pidsOf(target.host, 'ggml-rpc-server').length === 0 && pidsOf(target.host, 'llama-server').length === 0,
            { timeoutMs: 3000 }
          ).catch(() => violations.push(`${target.host.name}: a child outlived its SIGKILLed agent`))
          // its state entry leaves every view within the bound (5 s)
          await expectLeft(target, id, others, 5000, 'SIGKILL')
          await serving(others, 20_000, `serving after ${kind} of ${target.host.name}`)
          recoveryMs = Date.now() - t0
          target.start()
          break
        }
        case 'agent-freeze': {
          target.signal('SIGSTOP')
          await expectLeft(target, idOf(target), others, 10_000, 'SIGSTOP')
          await serving(others, 30_000, `serving after ${kind} of ${target.host.name}`)
          recoveryMs = Date.now() - t0
          target.signal('SIGCONT')
          break
        }
        case 'link-flap': {
          execFileSync('ip', ['-n', target.host.name, 'link', 'set', 'eth0', 'down'])
          await expectLeft(target, idOf(target), others, 10_000, 'its link went down')
          await serving(others, 30_000, `serving after ${kind} of ${target.host.name}`)
          recoveryMs = Date.now() - t0
          execFileSync('ip', ['-n', target.host.name, 'link', 'set', 'eth0', 'up'])
          execFileSync('ip', ['-n', target.host.name, 'route', 'replace', '224.0.0.0/4', 'dev', 'eth0'])
          break
        }
        default: {
          const name = kind.startsWith('rpc') ? 'ggml-rpc-server' : 'llama-server'
          const pids = pidsOf(target.host, name)
          for (const pid of pids) process.kill(pid, kind.endsWith('kill') ? 'SIGKILL' : 'SIGSTOP')
          if (kind.endsWith('freeze')) {
            // the cluster must notice and work around it (liveness, frozen-state detection), then thaw it
            await serving(agents, 30_000, `serving around ${kind} of ${target.host.name}`).catch(
              async () => await serving(others, 30_000, `serving without ${target.host.name}`)
            )
            recoveryMs = Date.now() - t0
            for (const pid of pids) {
              try {
                process.kill(pid, 'SIGCONT')
              } catch {} // already replaced (a frozen llama-server is killed and restarted)
            }
          } else {
            await serving(agents, 20_000, `serving after ${kind} of ${target.host.name}`)
            recoveryMs = Date.now() - t0
          }
        }
      }
      const backMs = await serving(agents, 60_000, `everyone back after ${kind} of ${target.host.name}`)
      report.push({ event: kind, target: target.host.name, recoveryMs, backMs })
    }
  } finally {
    clearInterval(monitor)
  }
  assert.deepEqual(violations, [])
})
