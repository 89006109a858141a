/**
 * A bare rpc-server that runs no agent (as SOLLOL users list in rpc_backends.conf): the model holder is
 * told of it with --rpc-backends-file, probes and measures it, and announces it; it shows in status as
 * static and unprotected, the plan uses it, and when it dies the cluster re-plans without it and serves on.
 */
import { after, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { SPLIT_TEST_MODEL, writeTestModel } from '@sollol/gguf'
import { TestNetwork } from './helpers/netns.js'
import { CLI, completeFrom, TestAgent } from './helpers/agents.js'
import { llamaBinaries } from './helpers/llama.js'
import { waitFor } from './helpers/wait.js'

const dir = mkdtempSync(join(tmpdir(), 'sollol-static-'))
const model = join(dir, 'model.gguf')
writeTestModel(model, SPLIT_TEST_MODEL)
const network = TestNetwork.create([{}, {}, {}, {}])
const [h0, h1, h2, client] = [network.host(0), network.host(1), network.host(2), network.host(3)]
const backends = join(dir, 'rpc_backends.conf')
writeFileSync(backends, `# SOLLOL's format\n${h2.address}:50052   # the bare rpc-server\n`)
// The agents could hold the model together; the bare rpc-server (measured, two threads) is the fastest
// node: the agents' speeds are given as slow (--rpc-speed), since measured ones on a busy machine came out
// near the bare server's and a plan without it was as good (a CI run waited 90 s for it to be used).
const common = ['--rpc-threads', '1', '--ctx-size', '256', '--rpc-speed', '2']
const holder = new TestAgent(h0, dir, [...common, '--model', model, '--max-memory', '24MiB', '--rpc-backends-file', backends])
const worker = new TestAgent(h1, dir, [...common, '--max-memory', '64MiB'])
const agents = [holder, worker]
const { rpcServer } = await llamaBinaries()
const bare = h2.run(rpcServer, ['--host', h2.address, '--port', '50052', '--threads', '2'], {
  reject: false,
  buffer: false,
  stdin: 'ignore'
})

after(async () => {
  bare.kill('SIGKILL')
  await Promise.all(agents.map(async (a) => await a.stop()))
  network.destroy()
  if (process.env.SOLLOL_KEEP_TEST_LOGS === undefined) rmSync(dir, { recursive: true, force: true })
})

const STATIC_ID = `static:${h2.address}:50052`

test('a bare rpc-server from rpc_backends.conf is probed, planned with and shown as static; its loss re-plans and serving goes on', async () => {
  for (const a of agents) a.start()
  const first = await waitFor(
    'serving with the bare rpc-server in the plan',
    () => {
      const v = holder.view()
      return v?.plan?.server.state === 'ready' && v.plan.assignments.some((a) => a.peerId === STATIC_ID && a.layers !== null)
        ? v
        : undefined
    },
    { timeoutMs: 90_000 }
  )
  const node = first.nodes.find((n) => n.peerId === STATIC_ID)!
  assert.equal(node.status, 'static')
  assert.equal(node.rpc.access, 'direct', 'shown as unprotected')
  assert.equal(node.rpc.protocol, '6.0.0')
  assert.ok(node.speed !== null, 'measured')
  assert.ok(
    worker.view()?.nodes.some((n) => n.peerId === STATIC_ID),
    'every agent sees it'
  )
  const status = await h0.run(process.execPath, [CLI, 'status'])
  assert.match(String(status.stdout), /static rpc-server \(no agent, unprotected\)/)
  assert.ok((await completeFrom(client, dir, first.plan!.server.url)).ok)

  bare.kill('SIGKILL')
  const after = await waitFor(
    'serving again without the bare rpc-server',
    () => {
      const v = holder.view()
      return v?.plan?.server.state === 'ready' &&
        v.plan.generation > first.plan!.generation &&
        !v.plan.assignments.some((a) => a.peerId === STATIC_ID)
        ? v
        : undefined
    },
    { timeoutMs: 30_000 }
  )
  const answer = await completeFrom(client, dir, after.plan!.server.url, 20_000)
  assert.ok(answer.ok, answer.output)
  await waitFor(
    'the bare rpc-server shown unreachable',
    () => holder.view()?.nodes.find((n) => n.peerId === STATIC_ID)?.rpc.state === 'unreachable',
    {
      timeoutMs: 15_000
    }
  )
})
