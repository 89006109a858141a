/**
 * A rolling upgrade must not split the cluster. One agent behaves as the next release would: its
 * announcements carry fields this release does not know (at the top and inside `rpc`) and say it speaks
 * versions 1-2. It is injected into a real agent process (`node --import`), which rewrites its own
 * announcements as they are encoded. This release must take it in as a member, plan with it and serve.
 */
import { after, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { SPLIT_TEST_MODEL, writeTestModel } from '@sollol/gguf'
import { TestNetwork } from './helpers/netns.js'
import { completeFrom, TestAgent } from './helpers/agents.js'
import { waitFor } from './helpers/wait.js'

/** Every announcement this process encodes gains what a newer release would add. */
const NEWER_RELEASE = `data:text/javascript,${encodeURIComponent(`
const stringify = JSON.stringify
JSON.stringify = function (value, ...rest) {
  if (value !== null && typeof value === 'object' && value.v === 1 && typeof value.peerId === 'string' && typeof value.rpc === 'object' && 'incarnation' in value) {
    value = { ...value, wire: { min: 1, max: 2 }, placementHints: { rack: 'b', tags: ['new'] }, rpc: { ...value.rpc, transport: 'rdma-ready' } }
  }
  return stringify.call(this, value, ...rest)
}
`)}`

const dir = mkdtempSync(join(tmpdir(), 'sollol-upgrade-'))
const model = join(dir, 'model.gguf')
writeTestModel(model, SPLIT_TEST_MODEL)
const network = TestNetwork.create([{}, {}, {}])
// neither can hold the model alone: the newer agent must hold layers
const common = ['--rpc-threads', '1', '--ctx-size', '256', '--max-memory', '48MiB']
const current = new TestAgent(network.host(0), dir, [...common, '--model', model])
const newer = new TestAgent(network.host(1), dir, common)
const agents = [current, newer]

after(async () => {
  await Promise.all(agents.map(async (a) => await a.stop()))
  network.destroy()
  if (process.env.SOLLOL_KEEP_TEST_LOGS === undefined) rmSync(dir, { recursive: true, force: true })
})

test('an agent of a newer release (unknown fields, versions 1-2) joins, is planned with and serves', async () => {
  current.start()
  newer.start(['--import', NEWER_RELEASE])
  const serving = await waitFor(
    'one cluster of both, serving with the newer agent in the plan',
    () => {
      const v = current.view()
      const newerId = newer.view()?.self
      return v?.plan?.server.state === 'ready' &&
        v.nodes.length === 2 &&
        v.plan.assignments.some((a) => a.peerId === newerId && a.layers !== null)
        ? v
        : undefined
    },
    { timeoutMs: 120_000 }
  )
  const newerId = newer.view()!.self
  const seen = serving.nodes.find((n) => n.peerId === newerId)!
  // kept on the object as it came (never acted on): the view of this release shows what the newer one said
  assert.equal((seen.rpc as unknown as { transport?: string }).transport, 'rdma-ready')
  assert.deepEqual(serving.incompatible ?? [], [])
  assert.equal(serving.counters?.dropReasons.invalid ?? 0, 0, JSON.stringify(serving.counters?.dropReasons))
  const answer = await completeFrom(network.host(2), dir, serving.plan!.server.url)
  assert.ok(answer.ok, answer.output)
  console.log(
    `rolling upgrade: the newer agent holds layers ${JSON.stringify(serving.plan!.assignments.find((a) => a.peerId === newerId)?.layers)}`
  )
})
