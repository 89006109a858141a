/**
 * A quant type an rpc-server's device cannot run. ggml's Vulkan backend (here Mesa's software device,
 * lavapipe) has no kernel for TQ1_0 weights, and over RPC llama.cpp cannot know it (an RPC device claims
 * every op): the rpc-server aborts at the first graph it computes ("ggml-vulkan.cpp:...: GGML_ASSERT(dmmv !=
 * nullptr) failed") and llama-server with it. The agent reads the abort from its rpc-server's output and
 * announces it; the coordinator leaves Vulkan0 out of its plans for this model and serves from the CPU of the
 * same rpc-server, and `status` says why, in one line. Without it the same plan would crash again and again.
 *
 * Needs what the devices test needs (lavapipe, the Vulkan backend set aside by setup) and llama-quantize.
 */
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DEFAULT_TEST_MODEL, writeTestModel } from '@sollol/gguf'
import { TestNetwork } from './helpers/netns.js'
import { CLI, completeFrom, TestAgent } from './helpers/agents.js'
import { binDirWithVulkan, llamaBinaries, requireVulkan0, VULKAN_ENV } from './helpers/llama.js'
import { waitFor } from './helpers/wait.js'

const dir = mkdtempSync(join(tmpdir(), 'sollol-backend-abort-'))
const f16 = join(dir, 'f16.gguf')
const model = join(dir, 'tq1_0.gguf')
// rows of 256 and 512: TQ1_0 blocks (256 values) fit every matrix
writeTestModel(f16, { ...DEFAULT_TEST_MODEL, layers: 4, embd: 256, ff: 512, heads: 8, type: 'f16' })
const network = TestNetwork.create([{}, {}])
const vulkanBin = await binDirWithVulkan(dir)
// --rpc-speed: both devices equally fast, so the plan fills Vulkan0 (the server's first device) first, as a
// measured GPU would be; and no calibration on the software GPU (a minute of shader compiles)
const holder = new TestAgent(network.host(0), dir, [
  '--rpc-threads',
  '1',
  '--ctx-size',
  '256',
  ...(vulkanBin !== undefined ? ['--llama-bin-dir', vulkanBin] : []),
  '--model',
  model,
  '--rpc-speed',
  '2',
  '--max-memory',
  'Vulkan0=64MiB,CPU=64MiB'
])

before(async () => {
  const binaries = await llamaBinaries()
  if (binaries.tools === undefined) throw new Error('no llama-quantize in the llama.cpp build: run `npx sollol-agent setup`')
  execFileSync(binaries.tools.quantize, [f16, model, 'TQ1_0', '2'], { stdio: 'pipe' })
  await requireVulkan0(vulkanBin)
})

after(async () => {
  await holder.stop()
  network.destroy()
  if (process.env.SOLLOL_KEEP_TEST_LOGS === undefined) rmSync(dir, { recursive: true, force: true })
})

test('a device that aborts on the model (Vulkan0 and TQ1_0) is left out of its plans; the CPU of the same server serves it', async () => {
  holder.start([], VULKAN_ENV)
  const serving = await waitFor(
    'serving with Vulkan0 left out after its abort',
    () => {
      const v = holder.view()
      const cut = v?.plan?.budgetCuts?.find((c) => c.device === 'Vulkan0')
      return v?.plan?.server.state === 'ready' && cut !== undefined ? { view: v, cut } : undefined
    },
    { timeoutMs: 180_000, explain: () => JSON.stringify(holder.view()?.plan ?? null) }
  )
  const { view, cut } = serving
  const plan = view.plan!
  // the first plan used Vulkan0, and it aborted there: that is what the cut comes from
  const log = holder.log()
  assert.match(log, /the rpc-server aborted in a compute backend/)
  assert.ok((log.match(/starting llama-server with a new plan/g) ?? []).length >= 2, 'a first plan, then one without Vulkan0')
  assert.equal(cut.budget, 0)
  assert.match(
    cut.reason,
    /^Vulkan0 aborted running this model \(ggml-vulkan\.cpp:\d+: GGML_ASSERT\(.*\) failed\); left out of plans for it$/
  )
  const placed = plan.assignments.filter((a) => a.layers !== null)
  assert.deepEqual(
    placed.map((a) => a.device),
    ['CPU'],
    JSON.stringify(plan.assignments)
  )
  assert.equal(plan.mismatch, null)

  const answer = await completeFrom(network.host(1), dir, plan.server.url, 60_000)
  assert.ok(answer.ok, answer.output)

  // it stays that way: no new abort, no new start in the next seconds of serving
  const starts = (holder.log().match(/starting llama-server with a new plan/g) ?? []).length
  const again = await completeFrom(network.host(1), dir, plan.server.url, 60_000)
  assert.ok(again.ok, again.output)
  assert.equal((holder.log().match(/starting llama-server with a new plan/g) ?? []).length, starts)

  const status = String((await network.host(0).run(process.execPath, [CLI, 'status'])).stdout)
  assert.match(status, /left out: .*Vulkan0 aborted running this model \(ggml-vulkan\.cpp:\d+: GGML_ASSERT/)
  console.log(`backend abort: ${cut.reason}; serving from ${placed.map((a) => `${a.device} ${JSON.stringify(a.layers)}`).join(', ')}`)
})
