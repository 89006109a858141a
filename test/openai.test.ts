/**
 * The OpenAI API on every agent: the official `openai` client, on a host that is not the coordinator,
 * talks to its local agent, which forwards through the mesh to the coordinator's llama-server.
 */
import { after, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { SPLIT_TEST_MODEL, writeTestModel } from '@sollol/gguf'
import { TestNetwork } from './helpers/netns.js'
import { ROOT, TestAgent } from './helpers/agents.js'
import { waitFor } from './helpers/wait.js'

const dir = mkdtempSync(join(tmpdir(), 'sollol-openai-'))
const model = join(dir, 'model.gguf')
writeTestModel(model, SPLIT_TEST_MODEL)
const network = TestNetwork.create([{}, {}, {}])
const h1 = network.host(0)
const h2 = network.host(1)
const h3 = network.host(2)
const common = ['--rpc-threads', '1', '--ctx-size', '512']
const coordinator = new TestAgent(h1, dir, [...common, '--model', model, '--max-memory', '30MiB'])
const worker = new TestAgent(h2, dir, [...common, '--max-memory', '60MiB'])
const client = new TestAgent(h3, dir, [...common, '--max-memory', '20MiB'])
const agents = [client, coordinator, worker]

after(async () => {
  await Promise.all(agents.map(async (a) => await a.stop()))
  network.destroy()
  rmSync(dir, { recursive: true, force: true })
})

const CLIENT = `
import OpenAI from 'openai'
const client = new OpenAI({ baseURL: 'http://127.0.0.1:7491/v1', apiKey: 'unused', maxRetries: 0 })
const out = {}
try {
  const models = await client.models.list()
  out.models = models.data.map((m) => m.id)
  const chat = await client.chat.completions.create({ model: 'any', messages: [{ role: 'user', content: 'hello' }], max_tokens: 8, temperature: 0 })
  out.chat = chat.choices[0].message.content
  const stream = await client.chat.completions.create({ model: 'any', messages: [{ role: 'user', content: 'hello' }], max_tokens: 8, temperature: 0, stream: true })
  out.chunks = 0
  out.streamed = ''
  for await (const chunk of stream) { out.chunks++; out.streamed += chunk.choices[0]?.delta?.content ?? '' }
  const completion = await client.completions.create({ model: 'any', prompt: 'once upon a time', max_tokens: 8, temperature: 0 })
  out.completion = completion.choices[0].text
} catch (err) { out.error = String(err); out.status = err.status; out.headers = err.headers ? Object.fromEntries(err.headers) : undefined }
console.log(JSON.stringify(out))
`

async function openai(): Promise<Record<string, unknown>> {
  const result = await h3.run(process.execPath, ['--input-type=module', '-e', CLIENT], { cwd: ROOT })
  return JSON.parse(String(result.stdout).trim().split('\n').pop() ?? '{}') as Record<string, unknown>
}

test('any agent serves the OpenAI API (503 with a reason while nobody serves, then chat, streaming, completions) and Prometheus metrics', async () => {
  client.start()
  await waitFor('the client-side agent', () => client.view(), { timeoutMs: 30_000 })
  const early = await openai()
  assert.equal(early.status, 503, JSON.stringify(early))
  assert.match(String(early.error), /not serving: (no coordinator elected yet|no agent holds a model)/)
  assert.equal((early.headers as Record<string, string>)['retry-after'], '5')

  coordinator.start()
  worker.start()
  await waitFor(
    'the cluster serving, as the client-side agent sees it',
    () => {
      const v = client.view()
      return v?.plan?.server.state === 'ready' && v.nodes.length === 3 && v.coordinator?.peerId === coordinator.view()?.self ? v : undefined
    },
    { timeoutMs: 60_000 }
  )
  const out = await openai()
  assert.equal(out.error, undefined, JSON.stringify(out))
  assert.ok((out.models as string[]).length >= 1, JSON.stringify(out))
  assert.ok(typeof out.chat === 'string' && (out.chat as string).length > 0, JSON.stringify(out))
  assert.ok((out.chunks as number) >= 2, `streamed in ${String(out.chunks)} chunks`)
  assert.ok((out.streamed as string).length > 0, JSON.stringify(out))
  // the random test model may stop at once on this prompt: a 200 with a text field is what is checked
  assert.equal(typeof out.completion, 'string', JSON.stringify(out))

  // Prometheus metrics on every agent; the coordinator adds llama-server's own.
  const metricsOf = async (host: typeof h1): Promise<string> => {
    const r = await host.run(process.execPath, [
      '--input-type=module',
      '-e',
      "const r = await fetch('http://127.0.0.1:7491/metrics'); console.log(r.headers.get('content-type')); console.log(await r.text())"
    ])
    return String(r.stdout)
  }
  const clientMetrics = await metricsOf(h3)
  assert.match(clientMetrics, /^text\/plain/)
  assert.match(clientMetrics, /sollol_cluster_nodes\{status="alive"\} 2/)
  assert.match(clientMetrics, /sollol_coordinator_term [1-9]/)
  assert.match(clientMetrics, /sollol_openai_requests_total\{route="\/v1\/chat\/completions",status="200"\} 2/)
  assert.match(clientMetrics, /sollol_openai_requests_total\{route="\/v1\/models",status="503"\} 1/)
  assert.match(clientMetrics, /sollol_openai_request_seconds_count\{route="\/v1\/chat\/completions"\} 2/)
  assert.match(clientMetrics, /sollol_gossip_messages_total\{direction="in"\} [1-9]/)
  assert.match(clientMetrics, /sollol_llama_server_up 0/)
  const coordinatorMetrics = await metricsOf(h1)
  assert.match(coordinatorMetrics, /sollol_llama_server_up 1/)
  assert.match(coordinatorMetrics, /sollol_llama_server_starts_total\{cause="first plan"\} 1/)
  assert.match(coordinatorMetrics, /llamacpp:tokens_predicted_total/)
})
