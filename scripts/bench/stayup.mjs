// Staying up with a model that takes real time to load: a >= 1 GiB generated model on three test hosts (two
// model holders offering too little for a layer, one worker holding every layer). For each state of the
// worker's tensor cache, a fresh cluster:
// - cold:   the worker runs without a cache (--no-rpc-cache): every load sends every weight again;
// - warm:   the worker's cache is on: the first load fills it, the next ones take their weights from it;
// - seeded: the worker's cache was seeded from the model file before it started (as an agent holding the
//           file does by itself): even the first load sends (almost) nothing.
// Measured per mode: the start (start to serving, weights over the LAN, re-plans in the 20 s after), the
// coordinator's SIGKILL (until the first completion through the worker's agent succeeds, weights the new
// term's load sent), then in warm mode a 3 s coordinator freeze (failed completions, re-plans) and the killed
// holder joining again (failed completions, re-plans, weights). Baseline: llama-server alone loading the same
// file from local disk (no RPC), start to its first completion.
import { mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DEFAULT_TEST_MODEL, readGgufHeader, tensorByteSizes, writeTestModel } from '@sollol/gguf'
import { cacheableTensors, freePort, LAN_TIMINGS, LlamaServerSupervisor, rpcCacheDir, seedRpcCache } from '@sollol/llama-cpp'
import { TestNetwork } from '../../test/dist/helpers/netns.js'
import { TestAgent } from '../../test/dist/helpers/agents.js'
import { llamaBinaries } from '../../test/dist/helpers/llama.js'
import { fmt, runScript, summary, table, UNTIL_SERVED, waitUntil } from './lib.mjs'

// Completions one after another for a while: how many failed, and the longest time without a success.
const KEEP_ASKING = `
const [url, forMs] = [process.argv[1], Number(process.argv[2])]
const until = Date.now() + forMs
let ok = 0, failed = 0, lastOk = Date.now(), longestGapMs = 0
while (Date.now() < until) {
  try {
    const r = await fetch(url + '/v1/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ messages: [{ role: 'user', content: 'hi' }], max_tokens: 4, temperature: 0 }), signal: AbortSignal.timeout(15000) })
    await r.text()
    if (r.status === 200) { ok++; longestGapMs = Math.max(longestGapMs, Date.now() - lastOk); lastOk = Date.now() } else failed++
  } catch { failed++ }
  await new Promise((r) => setTimeout(r, 50))
}
longestGapMs = Math.max(longestGapMs, Date.now() - lastOk)
console.log(JSON.stringify({ ok, failed, longestGapMs }))
`

const MODES = ['cold', 'warm', 'seeded']
const LAYERS = 9 // of 134 MB each (1.2 GB in all) (f32, hidden size 1664): every layer tensor above llama.cpp's 10 MiB hash threshold

async function localLoadSeconds(model, extraArgs = []) {
  const { llamaServer } = await llamaBinaries()
  const server = new LlamaServerSupervisor({
    binary: llamaServer,
    model,
    rpc: [],
    port: await freePort(),
    threads: 1,
    contextSize: 256,
    parallel: 1,
    gpuLayers: 0,
    extraArgs,
    timings: { ...LAN_TIMINGS, readyTimeoutMs: 600_000 }
  })
  const started = Date.now()
  await server.start() // resolves after a real completion
  const seconds = (Date.now() - started) / 1000
  await server.stop()
  return seconds
}

export async function benchStayUp({ quick, log }) {
  const dir = mkdtempSync(join(tmpdir(), 'sollol-bench-stayup-'))
  const model = join(dir, 'model.gguf')
  writeTestModel(model, { ...DEFAULT_TEST_MODEL, layers: LAYERS, embd: 1664, ff: 4480, heads: 8, weightStd: 0.05 })
  const modelBytes = statSync(model).size
  if (modelBytes < 2 ** 30) throw new Error(`expected a model of at least 1 GiB, generated ${modelBytes} bytes`)
  const result = { modelBytes, modes: {} }
  try {
    const [local, copied] = [[], []]
    for (let i = 0; i < (quick ? 1 : 3); i++) {
      local.push(await localLoadSeconds(model))
      copied.push(await localLoadSeconds(model, ['--no-mmap']))
    }
    result.localLoad = summary(local)
    // With --no-mmap llama-server reads every weight into its own memory, as an rpc-server must hold them.
    result.localLoadNoMmap = summary(copied)
    log(
      `llama-server alone, model from local disk: start to first completion ${fmt(result.localLoad.median)} s ` +
        `(mapped; ${fmt(result.localLoadNoMmap.median)} s read into memory with --no-mmap)`
    )
    for (const mode of MODES) {
      result.modes[mode] = await runMode(mode, dir, model, modelBytes, log)
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
  const mb = (b) => (b === undefined ? '-' : fmt(b / 1e6, 1))
  const pct = (b) => (b === undefined ? '-' : fmt((100 * b) / modelBytes, 2))
  log(
    '\n' +
      table([
        [
          'worker cache',
          'start s',
          'start MB over LAN',
          're-plans',
          'coordinator SIGKILL -> served s',
          'failover MB over LAN',
          '% of model'
        ],
        ...MODES.map((m) => {
          const r = result.modes[m]
          return [
            m,
            fmt(r.start.seconds),
            mb(r.start.lanBytes),
            r.start.replans,
            fmt(r.failover.seconds),
            mb(r.failover.lanBytes),
            pct(r.failover.lanBytes)
          ]
        })
      ])
  )
  const warm = result.modes.warm
  log(
    table([
      ['warm cluster', 'failed completions', 'longest gap s', 're-plans', 'MB over LAN'],
      ['3 s coordinator freeze', warm.freeze.failed, fmt(warm.freeze.longestGapMs / 1000), warm.freeze.replans, '-'],
      ['the killed holder joins again', warm.join.failed, fmt(warm.join.longestGapMs / 1000), warm.join.replans, mb(warm.join.lanBytes)]
    ])
  )
  result.summary = {
    warmFailoverShare: result.modes.warm.failover.lanBytes / modelBytes,
    seededFailoverShare: result.modes.seeded.failover.lanBytes / modelBytes,
    seededStartShare: result.modes.seeded.start.lanBytes / modelBytes,
    // The load an rpc-server's weights compare with: llama-server reading the file into its own memory
    // (--no-mmap). Mapped, it reads nothing before the first token, with the file in the page cache.
    failoverOverLocalLoad:
      Math.max(result.modes.warm.failover.seconds, result.modes.seeded.failover.seconds) / result.localLoadNoMmap.median,
    failoverOverMappedLoad: Math.max(result.modes.warm.failover.seconds, result.modes.seeded.failover.seconds) / result.localLoad.median,
    coldFailoverOverLocalLoad: result.modes.cold.failover.seconds / result.localLoadNoMmap.median,
    replansFromFreeze: warm.freeze.replans,
    replansFromStart: Math.max(...MODES.map((m) => result.modes[m].start.replans))
  }
  return result
}

/** Watches the worker's view for `ms`: how many times term or plan generation moved on from `from`. */
async function replansWithin(worker, from, ms) {
  const seen = new Set()
  const until = Date.now() + ms
  while (Date.now() < until) {
    const v = worker.view()
    if (v?.plan !== null && v?.plan !== undefined) seen.add(`${v.coordinator?.term}#${v.plan.generation}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  seen.delete(`${from.coordinator.term}#${from.plan.generation}`)
  return seen.size
}

async function runMode(mode, dir, model, modelBytes, log) {
  const network = TestNetwork.create([{}, {}, {}, {}])
  const modeDir = join(dir, mode)
  mkdirSync(modeDir)
  const common = ['--rpc-threads', '1', '--ctx-size', '256']
  const holders = [0, 1].map((i) => new TestAgent(network.hosts[i], modeDir, [...common, '--model', model, '--max-memory', '160MiB']))
  const worker = new TestAgent(network.hosts[2], modeDir, [
    ...common,
    '--max-memory',
    '4GiB',
    ...(mode === 'cold' ? ['--no-rpc-cache'] : [])
  ])
  const agents = [...holders, worker]
  const client = network.hosts[3]
  const r = { mode }
  try {
    if (mode === 'seeded') {
      const header = await readGgufHeader(model)
      const ranges = cacheableTensors(header.tensors, tensorByteSizes(header), header.tensorDataOffset)
      await seedRpcCache({
        modelPath: model,
        modelId: 'bench',
        ranges,
        cacheDir: rpcCacheDir(join(worker.dataDir, 'llama-cache')),
        maxBytes: 2 ** 40
      })
    }
    const startedAt = Date.now()
    for (const a of agents) a.start()
    const first = await waitUntil(
      'the cluster serving, its load done',
      () => {
        const v = worker.view()
        return v?.plan?.server.state === 'ready' && v.nodes.length === 3 && v.weightsOverLan?.done === true ? v : undefined
      },
      600_000,
      250
    )
    const startSeconds = (Date.now() - startedAt) / 1000
    r.start = { seconds: startSeconds, lanBytes: first.weightsOverLan.bytes, replans: await replansWithin(worker, first, 20_000) }
    log(`${mode}: serving ${fmt(startSeconds)} s after the start, ${fmt(first.weightsOverLan.bytes / 1e6, 1)} MB over the LAN`)

    if (mode === 'warm') {
      // a 3 s freeze of the coordinator's agent (what a busy machine looks like from outside)
      const coordinator = agents.find((a) => a.view()?.self === worker.view().coordinator.peerId)
      const before = worker.view()
      const asking = runScript(client, KEEP_ASKING, [before.plan.server.url, 15_000])
      const replans = replansWithin(worker, before, 15_000)
      await new Promise((resolve) => setTimeout(resolve, 2000))
      coordinator.signal('SIGSTOP')
      await new Promise((resolve) => setTimeout(resolve, 3000))
      coordinator.signal('SIGCONT')
      r.freeze = { ...(await asking), replans: await replans }
      const asked = r.freeze
      log(`${mode}: 3 s coordinator freeze: ${asked.failed} failed completions, ${r.freeze.replans} re-plans`)
    }

    // the coordinator's loss
    const view = worker.view()
    const coordinatorId = view.coordinator.peerId
    const victim = agents.find((a) => a.view()?.self === coordinatorId)
    const killedAt = Date.now()
    victim.signal('SIGKILL')
    const { at } = await runScript(worker.host, UNTIL_SERVED, ['http://127.0.0.1:7491', 300_000])
    if (at === null) throw new Error(`${mode}: no completion within 300 s after the coordinator's SIGKILL`)
    const second = await waitUntil(
      'the new term load done',
      () => {
        const v = worker.view()
        const load = v?.nodes.find((n) => n.peerId === v.self)?.rpc.load
        return v?.coordinator?.peerId !== coordinatorId &&
          v?.plan?.server.state === 'ready' &&
          v.weightsOverLan?.done &&
          load &&
          Date.parse(load.startedAt) >= killedAt
          ? v
          : undefined
      },
      60_000
    )
    r.failover = { seconds: (at - killedAt) / 1000, lanBytes: second.weightsOverLan.bytes }
    log(`${mode}: coordinator SIGKILL -> served after ${fmt(r.failover.seconds)} s, ${fmt(r.failover.lanBytes / 1e6, 2)} MB over the LAN`)

    if (mode === 'warm') {
      await victim.exited()
      const before = worker.view()
      const received = before.nodes.find((n) => n.peerId === before.self)?.rpc.load
      const asking = runScript(client, KEEP_ASKING, [before.plan.server.url, 30_000])
      const replans = replansWithin(worker, before, 30_000)
      victim.start()
      const asked = await asking
      await waitUntil('the holder back in the view', () => worker.view()?.nodes.length === 3, 60_000)
      const v = worker.view()
      const load = v.nodes.find((n) => n.peerId === v.self)?.rpc.load
      r.join = { ...asked, replans: await replans, lanBytes: load?.startedAt !== received?.startedAt ? v.weightsOverLan.bytes : 0 }
      log(`${mode}: the killed holder joins again: ${asked.failed} failed completions, ${r.join.replans} re-plans`)
    }
  } finally {
    await Promise.all(agents.map((a) => a.stop()))
    network.destroy()
  }
  return r
}
