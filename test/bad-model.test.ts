/**
 * A model file llama.cpp can never load (here: an architecture the build does not know, a well-formed GGUF
 * otherwise) is tried once, then dropped: the agent says why in one line (status and log), withdraws the
 * model (no longer electable) and keeps serving as a worker; llama-server is not started again.
 */
import { after, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildTestModel, DEFAULT_TEST_MODEL, writeGguf, type MetadataEntry } from '@sollol/gguf'
import { TestNetwork } from './helpers/netns.js'
import { TestAgent } from './helpers/agents.js'
import { waitFor } from './helpers/wait.js'

const dir = mkdtempSync(join(tmpdir(), 'sollol-bad-model-'))
const network = TestNetwork.create([{}])
const agent = new TestAgent(network.host(0), dir, ['--rpc-threads', '1', '--ctx-size', '256', '--model', join(dir, 'unknown-arch.gguf')])

after(async () => {
  await agent.stop()
  network.destroy()
  if (process.env.SOLLOL_KEEP_TEST_LOGS === undefined) rmSync(dir, { recursive: true, force: true })
})

test('a model of an architecture llama.cpp does not know is tried once, then the agent is a worker that says why', async () => {
  // the llama test model, renamed to an architecture no llama.cpp has
  const model = buildTestModel({ ...DEFAULT_TEST_MODEL, layers: 4 })
  const metadata = new Map<string, MetadataEntry>()
  for (const [key, entry] of model.metadata) {
    if (key === 'general.architecture') metadata.set(key, { ...entry, value: 'sollolnet' } as MetadataEntry)
    else metadata.set(key.replace(/^llama\./, 'sollolnet.'), entry)
  }
  writeGguf(join(dir, 'unknown-arch.gguf'), metadata, model.tensors)

  agent.start()
  const view = await waitFor(
    'the model dropped with a reason, the agent a ready worker',
    () => {
      const v = agent.view()
      const self = v?.nodes.find((n) => n.peerId === v.self)
      return self?.rpc.state === 'ready' && /architecture `sollolnet`/.test(v?.problem ?? '') ? v : undefined
    },
    { timeoutMs: 60_000, explain: () => JSON.stringify({ problem: agent.view()?.problem, plan: agent.view()?.plan?.server }) }
  )
  assert.match(
    view!.problem!,
    /^this llama.cpp build cannot load the model's architecture `sollolnet`; not serving .*unknown-arch\.gguf, serving as a worker only$/
  )
  const self = view!.nodes.find((n) => n.peerId === view!.self)!
  assert.equal(self.canCoordinate, false, 'no longer electable')
  assert.deepEqual(self.models, [])
  assert.equal(view!.plan, null)
  // still running, and llama-server not started again through a quiet period longer than the longest
  // restart backoff (8 x 1 s): a retry, had there been one, would have come in it
  const droppedAt = Date.now()
  await waitFor('10 s after the model was dropped', () => (Date.now() - droppedAt >= 10_000 ? true : undefined), { timeoutMs: 15_000 })
  const log = readFileSync(agent.logFile, 'utf8')
  assert.equal(agent.exitCode(), null, 'the agent keeps running')
  const starts = log.split('\n').filter((l) => l.includes('starting llama-server with a new plan')).length
  assert.equal(starts, 1, `one start only:\n${log.slice(-2000)}`)
})
