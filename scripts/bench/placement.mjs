// Placement quality and orchestration overhead, in two scenarios of three test hosts with memory offers that
// force a split over all three: unlike speeds (CPU quotas: a core, a core, a quarter core) and identical nodes
// (a core each). Identical nodes check that the planner loses nothing where there is nothing to gain.
//
// Round by round, alternately:
//   mesh phase:    the agents start (rpc-access open, so that the by-hand runs below can use the same
//                  rpc-servers the same way), plan, start llama-server; its decode speed is measured, and the
//                  command lines of its llama-server and rpc-servers are read from /proc; then the agents stop.
//   by-hand phase: the same rpc-server command lines are started by hand in the same hosts and quotas, and
//                  llama-server by hand with the mesh's exact command line ("mesh plan by hand", the overhead
//                  reference), without --tensor-split (llama.cpp's default split), and with the best split
//                  of an exhaustive sweep (round 1 sweeps every contiguous split the memory limits allow);
//                  in the unlike scenario llama.cpp's default split runs with the slow node first, in the
//                  middle and last in the --rpc order (its output layer goes to the last server), since the
//                  default's loss depends on where the slow node sits.
// llama.cpp's default split follows each device's memory (a CPU device reports the machine's RAM). CPU
// rpc-servers on one machine all report the same, so in those two scenarios the default is equal thirds. A
// third scenario gives the machines unlike memory too, the case where the default fails worst: a big slow
// machine beside two small fast ones. Each host's rpc-server (and agent) runs with a preloaded shim that makes
// sysconf(_SC_PHYS_PAGES), which ggml-cpu reads for its device memory, answer the host's size: the real
// llama.cpp default, on machines of those sizes, as CPU quotas stand in for slower machines.
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { layerCapacity, tensorSplitForLayerCounts } from '@sollol/core'
import { DEFAULT_TEST_MODEL, readModelInfo, writeTestModel } from '@sollol/gguf'
import { TestNetwork } from '../../test/dist/helpers/netns.js'
import { TestAgent } from '../../test/dist/helpers/agents.js'
import { execa } from 'execa'
import { commandLines, CpuGroup, decode, fmt, median, promptSpeed, quotaHost, runScript, summary, table, waitUntil } from './lib.mjs'

const CONTEXT = 512
const MAX_LAYERS_PER_NODE = 7

const READY = `
const [url, deadline] = [process.argv[1], Date.now() + Number(process.argv[2])]
for (;;) {
  try {
    const r = await fetch(url + '/completion', { method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'ok', n_predict: 1, cache_prompt: false }), signal: AbortSignal.timeout(5000) })
    if (r.status === 200) { console.log('true'); process.exit(0) }
  } catch {}
  if (Date.now() > deadline) { console.log('false'); process.exit(1) }
  await new Promise((r) => setTimeout(r, 100))
}
`
const LISTENING = `
import { connect } from 'node:net'
const [host, port, deadline] = [process.argv[1], Number(process.argv[2]), Date.now() + Number(process.argv[3])]
for (;;) {
  const ok = await new Promise((resolve) => { const s = connect(port, host); s.once('connect', () => { s.end(); resolve(true) }); s.once('error', () => resolve(false)) })
  if (ok) { console.log('true'); process.exit(0) }
  if (Date.now() > deadline) { console.log('false'); process.exit(1) }
  await new Promise((r) => setTimeout(r, 100))
}
`

/** Every way to give `total` layers to nodes in this order within their capacities (the last holds the output). */
export function contiguousSplits(capacities, total) {
  const out = []
  const walk = (i, left, prefix) => {
    if (i === capacities.length - 1) {
      if (left <= capacities[i]) out.push([...prefix, left])
      return
    }
    for (let c = 0; c <= Math.min(left, capacities[i]); c++) walk(i + 1, left - c, [...prefix, c])
  }
  walk(0, total, [])
  return out
}

/** The same llama-server arguments with the --rpc servers in another order. */
const withRpcOrder = (argv, order) => {
  const args = [...argv]
  args[args.indexOf('--rpc') + 1] = order.join(',')
  return args
}

const withSplit = (argv, split) => {
  const args = [...argv]
  const at = args.indexOf('--tensor-split')
  if (at >= 0) args.splice(at, 2)
  if (split !== null) args.push('--tensor-split', split.map((x) => String(Math.round(x * 1e6) / 1e6)).join(','))
  return args
}

/**
 * A shared library that makes sysconf(_SC_PHYS_PAGES) and sysconf(_SC_AVPHYS_PAGES) answer
 * SOLLOL_BENCH_MEMORY_BYTES (when set): ggml-cpu reports that as its device memory, and llama.cpp's default
 * split follows it. Built with the C compiler setup needs anyway.
 */
const MEMORY_SHIM = `#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <unistd.h>
long sysconf(int name) {
  static long (*real)(int);
  if (!real) real = (long (*)(int))dlsym(RTLD_NEXT, "sysconf");
  const char *bytes = getenv("SOLLOL_BENCH_MEMORY_BYTES");
  if (bytes != NULL && (name == _SC_PHYS_PAGES || name == _SC_AVPHYS_PAGES)) return atoll(bytes) / real(_SC_PAGESIZE);
  return real(name);
}
`

async function buildMemoryShim(dir) {
  writeFileSync(join(dir, 'memory-shim.c'), MEMORY_SHIM)
  await execa('cc', ['-shared', '-fPIC', '-O2', '-o', join(dir, 'memory-shim.so'), join(dir, 'memory-shim.c'), '-ldl'])
  return join(dir, 'memory-shim.so')
}

const GIB = 2 ** 30

/** PLACEMENT_SCENARIOS=unlike,memory,identical (default: all three), to measure one alone while working on it. */
const SCENARIOS = (process.env.PLACEMENT_SCENARIOS ?? 'unlike,memory,identical').split(',')

export async function benchPlacement({ quick, log }) {
  let unlike
  let memory
  let identical
  if (SCENARIOS.includes('unlike')) {
    log('scenario: unlike speeds (CPU quotas 1, 1, 0.25)')
    unlike = await placementScenario({ quick, log, cores: [1, 1, 0.25], sweepSplits: true, slowPositions: true })
  }
  if (SCENARIOS.includes('memory')) {
    // Issue 12's case (a): the slow machine has 8 GiB, the fast ones 1 GiB each, so llama.cpp's default
    // puts 80 % of the layers on the slow one; every node offers what it holds, the slow one the whole model.
    log('scenario: unlike speeds and memory (CPU quotas 1, 1, 0.25; machines of 1, 1 and 8 GiB)')
    const r = await placementScenario({
      quick,
      log,
      cores: [1, 1, 0.25],
      machineBytes: [GIB, GIB, 8 * GIB],
      slowOffersAll: true,
      // its default runs are slow (most layers on the quarter core): fewer rounds, the same four orders each
      rounds: quick ? 2 : 3,
      sweepSplits: false,
      slowPositions: true
    })
    memory = {
      cores: r.cores,
      machineBytes: r.machineBytes,
      meshPlan: r.meshPlan,
      placement: r.placement,
      prediction: r.prediction,
      target: 1.3
    }
  }
  if (SCENARIOS.includes('identical')) {
    log('scenario: identical nodes (CPU quotas 1, 1, 1)')
    identical = await placementScenario({ quick, log, cores: [1, 1, 1], sweepSplits: false, slowPositions: false })
  }
  return {
    ...unlike,
    ...(memory !== undefined ? { memoryUnlike: memory } : {}),
    ...(identical !== undefined
      ? {
          identical: {
            cores: identical.cores,
            meshPlan: identical.meshPlan,
            meshOverDefault: identical.placement.meshOverDefault,
            meshPlanTokensPerSecond: identical.placement.meshPlanTokensPerSecond,
            defaultSplitTokensPerSecond: identical.placement.defaultSplitTokensPerSecond,
            prediction: identical.prediction,
            target: 0.97
          }
        }
      : {})
  }
}

async function placementScenario({ quick, log, cores, sweepSplits, slowPositions, machineBytes, slowOffersAll = false, ...o }) {
  const rounds = o.rounds ?? (quick ? 3 : 4)
  const runs = quick ? 4 : 6
  const tokens = 48
  const sweepTokens = 48
  const sweepRuns = quick ? 2 : 3
  const dir = mkdtempSync(join(tmpdir(), 'sollol-bench-placement-'))
  const model = join(dir, 'model.gguf')
  // 16 layers of 14 MB (226 MB, f16): large enough that compute, not per-token round trips, dominates.
  writeTestModel(model, { ...DEFAULT_TEST_MODEL, layers: 16, embd: 768, ff: 2048, heads: 12, type: 'f16' })
  const info = await readModelInfo(model)
  const planModel = { ...info, name: 'model', id: '' }
  // The offer (the same on every node) that holds MAX_LAYERS_PER_NODE layers even on the host with the
  // output head: the two fast nodes hold 14 of the 16 layers, so the slow one must take 2.
  let offer = 1024 * 1024
  while (layerCapacity(planModel, { isHost: true, memoryBudget: offer }, true, CONTEXT) < MAX_LAYERS_PER_NODE) offer += 256 * 1024
  if (layerCapacity(planModel, { isHost: false, memoryBudget: offer }, false, CONTEXT) !== MAX_LAYERS_PER_NODE)
    throw new Error('the memory offer does not give every node the same capacity')
  const slowIndex = cores.indexOf(Math.min(...cores))
  // the slow node offers every layer and the output head: it could hold the model alone
  let bigOffer = offer
  while (layerCapacity(planModel, { isHost: false, memoryBudget: bigOffer }, true, CONTEXT) < info.layerCount) bigOffer += 1024 * 1024
  const offers = cores.map((_, i) => (slowOffersAll && i === slowIndex ? bigOffer : offer))
  // each host's machine size, as its rpc-server reports it (see MEMORY_SHIM); undefined: this machine's
  const shim = machineBytes !== undefined ? await buildMemoryShim(dir) : undefined
  const envOf = (i) => (shim !== undefined ? { LD_PRELOAD: shim, SOLLOL_BENCH_MEMORY_BYTES: String(machineBytes[i]) } : {})
  const groups = cores.map((c, i) => new CpuGroup(`sollol-bench-${process.pid}-h${i + 1}`, c))
  const network = TestNetwork.create([{}, {}, {}])
  const hosts = network.hosts.map((h, i) => quotaHost(h, groups[i]))
  const client = network.hosts[1] // outside any quota: the client must not be the bottleneck
  const common = ['--rpc-access', 'open', '--rpc-threads', '1', '--ctx-size', String(CONTEXT)]
  const agents = hosts.map(
    (h, i) => new TestAgent(h, dir, [...common, '--max-memory', String(offers[i]), ...(i === 0 ? ['--model', model] : [])])
  )
  const result = {
    model: `16 layers x 768 embedding, f16, ${(statSync(model).size / 1e6).toFixed(0)} MB`,
    cores,
    ...(machineBytes !== undefined ? { machineBytes } : {}),
    offerBytes: offers,
    maxLayersPerNode: MAX_LAYERS_PER_NODE,
    rounds,
    runs,
    tokens
  }
  const mesh = []
  const meshPrompt = []
  const byHand = { mesh: [], default: [], best: [], 'default, slow first': [], 'default, slow middle': [], 'default, slow last': [] }
  let recorded
  let sweep
  let best
  try {
    for (let round = 1; round <= rounds; round++) {
      // ---- mesh phase
      for (const i of [1, 2, 0]) {
        const a = agents[i]
        a.start([], envOf(i))
        await waitUntil(`agent on ${a.host.name}`, () => a.view(), 120_000)
      }
      let view = await waitUntil(
        'the mesh serving over three hosts',
        () => {
          const v = agents[0].view()
          return v?.plan?.server.state === 'ready' && v.nodes.length === 3 ? v : undefined
        },
        180_000
      )
      // Priced in the model's shape once every agent measured in it (calibration-shape.ts): the agents do
      // so after they join, one at a time on this machine; the plan is re-priced (or re-planned, when that
      // pays) then. Waited for up to two minutes; a prediction still on the generic calibration says so.
      const priced = await waitUntil(
        "the plan priced in the model's shape",
        () => {
          const v = agents[0].view()
          return v?.plan?.server.state === 'ready' && v.nodes.length === 3 && typeof v.plan.pricedWith === 'string' ? v : undefined
        },
        120_000
      ).catch(() => undefined)
      if (priced === undefined)
        log("the plan was not priced in the model's shape within 2 minutes: the prediction is the generic calibration's")
      view = priced ?? agents[0].view() ?? view
      const url = view.plan.server.url
      // The test watchers (one polling process per agent) are not part of the product: stop them so that
      // the mesh phase runs what a user runs, as the by-hand phase does.
      await Promise.all(agents.map((a) => a.stopWatching()))
      await decode(client, url, 8, 1) // warm-up
      const speeds = await decode(client, url, tokens, runs)
      mesh.push(...speeds)
      meshPrompt.push(...(await promptSpeed(client, url, 3)))
      log(`round ${round} mesh-started llama-server: ${speeds.map((s) => fmt(s, 1)).join(' ')} tok/s`)
      if (recorded === undefined) {
        const llama = (await commandLines(network.hosts[0].name, /llama-server$/))[0]
        const rpc = []
        for (const h of network.hosts) rpc.push((await commandLines(h.name, /rpc-server$/))[0])
        if (llama === undefined || rpc.some((r) => r === undefined))
          throw new Error('could not read the command lines of the mesh processes')
        const order = llama.argv[llama.argv.indexOf('--rpc') + 1].split(',')
        const counts = order.map((endpoint) => {
          const node = view.nodes.find((n) => `${n.rpc.host}:${n.rpc.port}` === endpoint)
          return node?.layers === null || node === undefined ? 0 : node.layers[1] - node.layers[0] + 1
        })
        const speedOf = order.map(
          (endpoint) => view.nodes.find((n) => `${n.rpc.host}:${n.rpc.port}` === endpoint)?.speed?.secondsPerGiB ?? null
        )
        const fixedOf = order.map(
          (endpoint) => view.nodes.find((n) => `${n.rpc.host}:${n.rpc.port}` === endpoint)?.speed?.fixedSecondsPerToken ?? null
        )
        recorded = { llama: llama.argv, rpc: rpc.map((r) => r.argv), order, counts, speedOf, url }
        result.meshPlan = {
          order,
          layerCounts: counts,
          measuredSecondsPerGiB: speedOf,
          measuredFixedSecondsPerToken: fixedOf,
          measuredPromptSecondsPerGiB: order.map(
            (endpoint) => view.nodes.find((n) => `${n.rpc.host}:${n.rpc.port}` === endpoint)?.modelSpeed?.speed?.promptSecondsPerGiB ?? null
          ),
          predictedTokensPerSecond: view.plan.predictedTokensPerSecond,
          predictedPromptTokensPerSecond: view.plan.predictedPromptTokensPerSecond ?? null,
          pricedWith: view.plan.pricedWith ?? null
        }
        log(`mesh plan: ${order.map((e, i) => `${e} ${counts[i]} layers`).join(', ')}`)
      }
      await Promise.all(agents.map((a) => a.stop()))

      // ---- by-hand phase: the same rpc-servers, llama-server typed by hand
      const rpcServers = recorded.rpc.map((argv, i) => {
        const host = hosts[i]
        return host.run('/bin/sh', ['-c', 'trap "" PIPE; exec "$0" "$@"', ...argv], { stdin: 'ignore', env: envOf(i) })
      })
      try {
        for (const [i, argv] of recorded.rpc.entries()) {
          const at = argv.indexOf('--host')
          const port = argv[argv.indexOf('--port') + 1]
          await runScript(network.hosts[i], LISTENING, [at >= 0 ? argv[at + 1] : '127.0.0.1', port, 30_000])
        }
        const order = recorded.order
        const nodeOf = (endpoint) => network.hosts.findIndex((h) => endpoint.startsWith(h.address + ':'))
        const run = async (name, split, n, reps) => await runArgs(name, withSplit(recorded.llama.slice(1), split), n, reps)
        const runArgs = async (name, args, n = tokens, reps = runs) => {
          const server = hosts[0].run(recorded.llama[0], args, { stdin: 'ignore' })
          try {
            const ready = await runScript(client, READY, [recorded.url, 120_000])
            if (ready !== true) throw new Error(`llama-server (${name}) did not become ready`)
            await decode(client, recorded.url, 8, 1)
            return await decode(client, recorded.url, n, reps)
          } finally {
            server.kill('SIGTERM')
            const { stdout, stderr } = await server
            // where llama.cpp put the weights (what its default split did), once per configuration
            if (round === 1 && !name.startsWith('sweep') && !name.startsWith('finalist'))
              log(`  ${name}: model weights per server (MiB): ${weightsPerServer(`${stdout}\n${stderr}`, nodeOf)}`)
          }
        }
        // the slowest host (by its quota) first, in the middle, last; the others in the mesh's order
        const slow = order.find((endpoint) => nodeOf(endpoint) === slowIndex)
        const others = order.filter((endpoint) => endpoint !== slow)
        const positions = { first: [slow, ...others], middle: [others[0], slow, others[1]], last: [...others, slow] }
        /** llama-server's arguments for a split of the layers over the servers in `rpcOrder`. */
        const argsFor = (rpcOrder, counts) => withRpcOrder(withSplit(recorded.llama.slice(1), tensorSplitForLayerCounts(counts)), rpcOrder)
        if (sweepSplits && sweep === undefined) {
          // every contiguous split in the mesh's order and with the slow node in each position (subsets are
          // the splits that give a node no layer)
          const orders = [order, ...Object.values(positions).filter((o) => o.join() !== order.join())]
          sweep = []
          for (const rpcOrder of orders) {
            const capacities = rpcOrder.map((endpoint, i) =>
              layerCapacity(
                planModel,
                { isHost: nodeOf(endpoint) === 0, memoryBudget: offers[nodeOf(endpoint)] },
                i === rpcOrder.length - 1,
                CONTEXT
              )
            )
            const splits = contiguousSplits(capacities, info.layerCount)
            log(
              `exhaustive sweep, order ${rpcOrder.join(',')}: ${splits.length} contiguous splits within the memory limits (capacities ${capacities.join(', ')})`
            )
            for (const counts of splits) {
              const tps = await runArgs(`sweep ${counts}`, argsFor(rpcOrder, counts), sweepTokens, sweepRuns)
              sweep.push({ order: rpcOrder, counts, tokensPerSecond: median(tps), samples: tps })
            }
          }
          sweep.sort((a, b) => b.tokensPerSecond - a.tokensPerSecond)
          // Single samples are noisy: the three leaders are measured again, and the best median wins.
          const finalists = []
          for (const candidate of sweep.slice(0, 3)) {
            const tps = await runArgs(`finalist ${candidate.counts}`, argsFor(candidate.order, candidate.counts), sweepTokens, runs)
            const label = `${candidate.counts.join('/')} on ${candidate.order.map((e) => `h${nodeOf(e) + 1}`).join(',')}`
            finalists.push({ order: candidate.order, counts: candidate.counts, label, tokensPerSecond: median(tps), samples: tps })
          }
          finalists.sort((a, b) => b.tokensPerSecond - a.tokensPerSecond)
          best = finalists[0]
          result.finalists = finalists
          log(
            `best of the sweep, after measuring its top 3 again (${finalists.map((f) => `${f.label}: ${fmt(f.tokensPerSecond, 1)}`).join(', ')} tok/s): ${best.label}; mesh plan ${recorded.counts.join('/')} on ${order.map((e) => `h${nodeOf(e) + 1}`).join(',')}`
          )
          result.sweep = { orders: orders.length, splits: sweep }
          result.best = { order: best.order, layerCounts: best.counts }
        }
        const configs = [
          ['mesh', async () => await runExact(hosts[0], client, recorded, runs, tokens)],
          ['default', async () => await run('default', null, tokens, runs)]
        ]
        if (sweepSplits) configs.push(['best', async () => await runArgs('best', argsFor(best.order, best.counts))])
        if (slowPositions) {
          for (const [where, rpcOrder] of Object.entries(positions))
            configs.push([
              `default, slow ${where}`,
              async () => await runArgs(`default, slow ${where}`, withRpcOrder(withSplit(recorded.llama.slice(1), null), rpcOrder))
            ])
        }
        // The order turns round by round, so that no configuration always runs first (or last).
        const turn = (round - 1) % configs.length
        for (const [name, measure] of [...configs.slice(turn), ...configs.slice(0, turn)]) {
          const speeds = await measure()
          byHand[name].push(...speeds)
          log(`round ${round} by hand, ${name}: ${speeds.map((s) => fmt(s, 1)).join(' ')} tok/s`)
        }
      } finally {
        for (const p of rpcServers) p.kill('SIGTERM')
        await Promise.all(rpcServers)
      }
    }
  } finally {
    await Promise.all(agents.map((a) => a.stop()))
    network.destroy()
    for (const g of groups) g.destroy()
    // KEEP_BENCH_DIR=1 keeps the agents' logs and data dirs (to see why a run went as it did)
    if (process.env.KEEP_BENCH_DIR === '1') log(`kept ${dir}`)
    else rmSync(dir, { recursive: true, force: true })
  }
  const m = summary(byHand.mesh)
  const d = summary(byHand.default)
  const b = sweepSplits ? summary(byHand.best) : undefined
  const started = summary(mesh)
  // a ratio of medians, and its spread: the slowest mesh sample over the fastest other, and the reverse
  const ratio = (x, y) => ({ median: x.median / y.median, low: x.min / y.max, high: x.max / y.min })
  const byPosition = slowPositions
    ? Object.fromEntries(
        ['first', 'middle', 'last'].map((where) => {
          const dp = summary(byHand[`default, slow ${where}`])
          return [where, { defaultSplitTokensPerSecond: dp, meshOverDefault: ratio(m, dp) }]
        })
      )
    : undefined
  result.placement = {
    meshPlanTokensPerSecond: m,
    defaultSplitTokensPerSecond: d,
    ...(b !== undefined ? { bestSplitTokensPerSecond: b, meshOverBest: m.median / b.median, meshOverBestSpread: ratio(m, b) } : {}),
    meshOverDefault: m.median / d.median,
    meshOverDefaultSpread: ratio(m, d),
    ...(byPosition !== undefined
      ? { slowPosition: byPosition, worstMeshOverDefault: Math.min(...Object.values(byPosition).map((p) => p.meshOverDefault.median)) }
      : {}),
    targets: { meshOverDefault: 1.3, meshOverBest: 0.95 }
  }
  result.overhead = { meshStartedTokensPerSecond: started, byHandTokensPerSecond: m, ratio: started.median / m.median, target: 0.97 }
  // the planner's own prediction against what its plan measured (the cost model, calibration included)
  const predicted = result.meshPlan.predictedTokensPerSecond
  const promptMeasured = summary(meshPrompt)
  const promptPredicted = result.meshPlan.predictedPromptTokensPerSecond
  result.prediction = {
    pricedWith: result.meshPlan.pricedWith,
    predictedTokensPerSecond: predicted,
    measuredTokensPerSecond: started,
    ratio: predicted / started.median,
    predictedPromptTokensPerSecond: promptPredicted,
    measuredPromptTokensPerSecond: promptMeasured,
    ...(promptPredicted !== null ? { promptRatio: promptPredicted / promptMeasured.median } : {})
  }
  const spread = (r) => `${fmt(r.median)} (${fmt(r.low)}-${fmt(r.high)})`
  log(
    '\n' +
      table([
        ['placement (decode tok/s)', 'median', 'min', 'max', 'n'],
        ...[
          ['mesh plan ' + recorded.counts.join('/'), m],
          ["llama.cpp default split, the mesh's order", d],
          ...(slowPositions
            ? ['first', 'middle', 'last'].map((w) => [`llama.cpp default split, slow ${w}`, summary(byHand[`default, slow ${w}`])])
            : []),
          ...(b !== undefined ? [['best of sweep ' + best.label, b]] : []),
          ['mesh-started llama-server', started]
        ].map(([label, s]) => [label, fmt(s.median, 1), fmt(s.min, 1), fmt(s.max, 1), s.n])
      ]) +
      `\nmesh / default = ${spread(result.placement.meshOverDefaultSpread)} (target >= 1.3)` +
      (byPosition !== undefined
        ? `; slow node first / middle / last: ${['first', 'middle', 'last'].map((w) => spread(byPosition[w].meshOverDefault)).join(' / ')}`
        : '') +
      (b !== undefined ? `\nmesh / best = ${spread(result.placement.meshOverBestSpread)} (target >= 0.95)` : '') +
      `\norchestration: mesh-started / by hand = ${fmt(result.overhead.ratio, 3)} (target >= 0.97)` +
      `\nprediction (${result.meshPlan.pricedWith !== null ? `priced in the model's shape, ${result.meshPlan.pricedWith}` : 'the generic calibration'}): ` +
      `${fmt(predicted, 1)} tok/s predicted / ${fmt(started.median, 1)} measured = ${fmt(result.prediction.ratio)} (target 0.8-1.2)` +
      `; prompt ${promptPredicted !== null ? fmt(promptPredicted, 0) : '-'} predicted / ${fmt(promptMeasured.median, 0)} measured` +
      (promptPredicted !== null ? ` = ${fmt(result.prediction.promptRatio)}` : '')
  )
  return result
}

/** `h2 98, h3 30, h1 100`: the RPC model buffers llama-server's log reports, by host, in --rpc order. */
function weightsPerServer(output, nodeOf) {
  const found = [...String(output).matchAll(/RPC\d+\[([^\]]+)\] model buffer size =\s+([\d.]+) MiB/g)]
  return found.length === 0
    ? '(not in the log)'
    : found.map(([, endpoint, mib]) => `h${nodeOf(endpoint) + 1} ${Math.round(Number(mib))}`).join(', ')
}

/** The mesh's llama-server command line exactly as the mesh ran it. */
async function runExact(host, client, recorded, runs, tokens) {
  const server = host.run(recorded.llama[0], recorded.llama.slice(1), { stdin: 'ignore' })
  try {
    const ready = await runScript(client, READY, [recorded.url, 120_000])
    if (ready !== true) throw new Error('llama-server (mesh command by hand) did not become ready')
    await decode(client, recorded.url, 8, 1)
    return await decode(client, recorded.url, tokens, runs)
  } finally {
    server.kill('SIGTERM')
    await server
  }
}
