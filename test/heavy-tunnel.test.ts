/**
 * Heavy legitimate traffic: a keyed cluster whose worker is reachable only through the encrypted mesh
 * tunnel (`--rpc-access tunnel`) loads a >= 500 MB model, so most weights cross the tunnel (every byte
 * through the cluster key's cipher and Noise), then serves streamed completions for a minute. No agent
 * may die or restart. (What killed agents before: the old pnet cipher's memory growth under heavy traffic.)
 */
import { after, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DEFAULT_TEST_MODEL, writeTestModel } from '@sollol/gguf'
import { generateClusterKey } from '@sollol/mesh'
import { TestNetwork } from './helpers/netns.js'
import { TestAgent } from './helpers/agents.js'
import { waitFor } from './helpers/wait.js'

const STREAM_FOR_MS = Number(process.env.SOLLOL_HEAVY_STREAM_MS ?? 60_000)
const dir = mkdtempSync(join(tmpdir(), 'sollol-heavy-'))
const key = join(dir, 'cluster.key')
writeFileSync(key, generateClusterKey(), { mode: 0o600 })
const model = join(dir, 'model.gguf')
// 10 layers of ~51 MiB (f32): ~520 MB in all
writeTestModel(model, { ...DEFAULT_TEST_MODEL, layers: 10, embd: 1024, ff: 2816, heads: 16, weightStd: 0.05 })
const modelBytes = statSync(model).size
const network = TestNetwork.create([{}, {}, {}])
const [h1, h2] = [network.host(0), network.host(1)]
const common = ['--rpc-threads', '1', '--ctx-size', '256', '--cluster-key', key, '--rpc-access', 'tunnel']
// The model holder offers too little: at least 3/4 of the weights must go to the worker, through the tunnel.
const coordinator = new TestAgent(h1, dir, [...common, '--model', model, '--max-memory', `${Math.floor(modelBytes / 4 / 2 ** 20)}MiB`])
const worker = new TestAgent(h2, dir, [...common, '--max-memory', '2GiB'])
const agents = [coordinator, worker]

after(async () => {
  await Promise.all(agents.map(async (a) => await a.stop()))
  network.destroy()
  if (process.env.SOLLOL_KEEP_TEST_LOGS === undefined) rmSync(dir, { recursive: true, force: true })
})

const STREAMER = `
const [url, forMs] = [process.argv[2], Number(process.argv[3])]
const until = Date.now() + forMs
let completions = 0, chunks = 0, failures = []
while (Date.now() < until) {
  try {
    const r = await fetch(url + '/v1/chat/completions', {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ messages: [{ role: 'user', content: 'hello' }], max_tokens: 16, stream: true }),
      signal: AbortSignal.timeout(60000)
    })
    if (r.status !== 200) { failures.push('status ' + r.status + ': ' + (await r.text()).slice(0, 300)); continue }
    const text = await r.text()
    chunks += text.split('\\n').filter((l) => l.startsWith('data: {')).length
    if (!text.includes('data: [DONE]')) failures.push('no [DONE]')
    else completions++
  } catch (err) { failures.push(String(err)) }
}
console.log(JSON.stringify({ completions, chunks, failures }))
`

test('a >= 500 MB model loads through the keyed tunnel and serves streamed completions for a minute; no agent restarts', async () => {
  assert.ok(modelBytes >= 500e6, `model of ${modelBytes} bytes`)
  for (const a of agents) a.start()
  const pids = agents.map((a) => a.pid)
  const started = Date.now()
  const serving = await waitFor(
    'the cluster serving the model over the tunnel',
    () => {
      const v = coordinator.view()
      return v?.plan?.server.state === 'ready' ? v : undefined
    },
    { timeoutMs: 600_000, intervalMs: 250 }
  )
  const loadSeconds = (Date.now() - started) / 1000
  const workerId = worker.view()?.self
  const onWorker = serving.plan!.assignments.find((a) => a.peerId === workerId)
  assert.ok(
    onWorker !== undefined && onWorker.memoryBytes >= modelBytes * 0.6,
    `the worker holds most weights: ${JSON.stringify(serving.plan!.assignments)}`
  )

  const script = join(dir, 'streamer.mjs')
  writeFileSync(script, STREAMER)
  const run = await h1.run(process.execPath, [script, 'http://127.0.0.1:7491', String(STREAM_FOR_MS)], { timeout: STREAM_FOR_MS + 120_000 })
  const result = JSON.parse(String(run.stdout).trim()) as { completions: number; chunks: number; failures: string[] }
  assert.deepEqual(result.failures, [], 'every streamed completion finished')
  assert.ok(result.completions >= 3, `streamed completions: ${JSON.stringify(result)}`)

  for (const [i, a] of agents.entries()) {
    assert.equal(a.exitCode(), null, `${a.host.name} is up`)
    assert.equal(a.pid, pids[i], `${a.host.name} was not restarted`)
    assert.doesNotMatch(a.log(), /agent died/)
  }
  const after = coordinator.view()!
  assert.equal(after.plan?.generation, serving.plan!.generation, 'no re-plan')
  console.log(
    `heavy tunnel: ${(modelBytes / 1e6).toFixed(0)} MB model, ${(onWorker.memoryBytes / 1e6).toFixed(0)} MB through the tunnel, ` +
      `start to serving ${loadSeconds.toFixed(1)} s; ${result.completions} streamed completions (${result.chunks} chunks) in ${STREAM_FOR_MS / 1000} s`
  )
})
