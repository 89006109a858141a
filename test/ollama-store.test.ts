/**
 * A model from Ollama's store: `--model ollama:NAME:TAG` finds the GGUF blob through the manifest, the agent
 * announces it by that name and serves it; `sollol-agent models` lists it and says the cluster can hold it.
 * The store is laid out by the test (as `ollama pull` leaves one) around a generated model.
 */
import { after, test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { SPLIT_TEST_MODEL, writeTestModel } from '@sollol/gguf'
import { TestNetwork } from './helpers/netns.js'
import { CLI, completeFrom, TestAgent } from './helpers/agents.js'
import { waitFor } from './helpers/wait.js'

const dir = mkdtempSync(join(tmpdir(), 'sollol-ollama-'))
const store = join(dir, 'ollama', 'models')
const model = join(dir, 'model.gguf')
writeTestModel(model, SPLIT_TEST_MODEL)
const bytes = readFileSync(model)
const digest = createHash('sha256').update(bytes).digest('hex')
mkdirSync(join(store, 'blobs'), { recursive: true })
writeFileSync(join(store, 'blobs', `sha256-${digest}`), bytes)
mkdirSync(join(store, 'manifests', 'registry.ollama.ai', 'library', 'tiny'), { recursive: true })
writeFileSync(
  join(store, 'manifests', 'registry.ollama.ai', 'library', 'tiny', 'split'),
  JSON.stringify({
    schemaVersion: 2,
    layers: [{ mediaType: 'application/vnd.ollama.image.model', digest: `sha256:${digest}`, size: bytes.length }]
  })
)
process.env.OLLAMA_MODELS = store // inherited by the agents and commands started below

const network = TestNetwork.create([{}, {}, {}])
const agent = new TestAgent(network.host(0), dir, ['--rpc-threads', '1', '--ctx-size', '256', '--model', 'ollama:tiny:split'])
// a tag that is not in the store: the agent says why and serves as a worker
const mistaken = new TestAgent(network.host(2), dir, ['--rpc-threads', '1', '--model', 'ollama:tiny:7b'])

after(async () => {
  await Promise.all([agent.stop(), mistaken.stop()])
  network.destroy()
  if (process.env.SOLLOL_KEEP_TEST_LOGS === undefined) rmSync(dir, { recursive: true, force: true })
})

test('--model ollama:NAME:TAG serves the model from the store; models lists it; a wrong tag is one line naming the tags', async () => {
  agent.start()
  mistaken.start()
  const view = await waitFor('serving the Ollama model', () => (agent.view()?.plan?.server.state === 'ready' ? agent.view() : undefined), {
    timeoutMs: 60_000
  })
  assert.equal(view!.plan!.model.name, 'ollama:tiny:split')
  const answer = await completeFrom(network.host(1), dir, view!.plan!.server.url)
  assert.ok(answer.ok, answer.output)

  const listed = await network.host(0).run(process.execPath, [CLI, 'models', '--json'])
  const { models } = JSON.parse(String(listed.stdout)) as { models: Array<{ source: string; fits: boolean | null; architecture: string }> }
  const tiny = models.find((m) => m.source === 'ollama:tiny:split')
  assert.ok(tiny !== undefined, String(listed.stdout))
  assert.equal(tiny.architecture, 'llama')
  assert.equal(tiny.fits, true)

  // the agent with the wrong tag: up, a worker of the cluster, and its log says why in one line
  await waitFor('the mistaken agent in the cluster', () => agent.view()?.nodes.length === 2, { timeoutMs: 30_000 })
  const other = agent.view()!.nodes.find((n) => n.peerId !== agent.view()!.self)!
  assert.equal(other.canCoordinate, false)
  assert.equal(mistaken.exitCode(), null)
  assert.match(mistaken.log(), /got `7b`; it has: split; serving as a worker only/)

  const wrong = await network.host(1).run(process.execPath, [CLI, 'model-info', 'ollama:tiny:7b'], { reject: false })
  assert.equal(wrong.exitCode, 2)
  assert.match(String(wrong.stderr), /got `7b`; it has: split/)
  assert.equal(String(wrong.stderr).trim().split('\n').length, 1, String(wrong.stderr))
})
