#!/usr/bin/env node
// A GPU beside the CPU in one rpc-server, checked on a real machine (scripts/gpu-check.sh wraps this).
//
//   node scripts/gpu-check.mjs [--device CUDA0] [--layers 32] [--embd 1024] [--gpu-share 0.5] [--tokens 64] [--bin-dir DIR]
//
// Sets up llama.cpp (prebuilt backends: CUDA where the driver and runtime are), generates an f16 model,
// then measures decode speed three ways on this machine, all over loopback RPC:
//   mesh      an agent whose rpc-server serves DEVICE and the CPU, with per-device budgets that give the
//             device about --gpu-share of the model (the planner splits it across the device and the CPU);
//   cpu-only  the same agent with --rpc-device CPU;
//   default   llama.cpp by hand: the same rpc-server and llama-server without --tensor-split (its default
//             split follows each device's free memory).
// --gpu-share takes a list (0.5,1.2): one mesh run per share, e.g. one where the model needs the CPU too and one
// where the device could hold it alone (the planner then leaves the CPU out when it only slows the cluster).
// Prints one JSON line per measurement and a table. Exit 2 when DEVICE is not there. Everything listens on
// 127.0.0.1; the agent's mDNS is off.
// --runs picks measurements (mesh,cpu-only,default); the agents' logs stay in the printed folder.
// Tried here with lavapipe as the device (the build copied with optional/libggml-vulkan.so beside it):
//   GGML_VK_VISIBLE_DEVICES=0 node scripts/gpu-check.mjs --device Vulkan0 --layers 8 --embd 256 --bin-dir DIR
// Run on an H200 (docs/benchmarks.md) with --bin-dir at setup's loadable build plus a libggml-cuda.so built
// there from the same release's ggml/ folder (cmake -DGGML_CUDA=ON -DGGML_BACKEND_DL=ON -DGGML_CPU=OFF).
const RUNS = ['mesh', 'cpu-only', 'default']
import { execFileSync, spawn } from 'node:child_process'
import { mkdtempSync, openSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const CLI = join(ROOT, 'packages', 'sollol-agent', 'bin', 'sollol-agent.js')
const { values: o } = parseArgs({
  options: {
    device: { type: 'string', default: 'CUDA0' },
    layers: { type: 'string', default: '32' },
    embd: { type: 'string', default: '1024' },
    'gpu-share': { type: 'string', default: '0.5' },
    tokens: { type: 'string', default: '64' },
    /** which measurements: mesh, cpu-only, default (all by default) */
    runs: { type: 'string', default: 'mesh,cpu-only,default' },
    /** llama.cpp binaries to use instead of setup's (e.g. a copy with the Vulkan backend for a software device) */
    'bin-dir': { type: 'string' }
  }
})
const MIB = 2 ** 20
const runs = o.runs.split(',')
/** A usage mistake: one line, exit 2. */
const usage = (line) => {
  process.stderr.write(`gpu-check: ${line}\n`)
  process.exit(2)
}
if (runs.some((r) => !RUNS.includes(r))) usage(`--runs: expected some of ${RUNS.join(',')}, got ${o.runs}`)
const shares = o['gpu-share'].split(',').map(Number)
if (shares.some((s) => !(s > 0))) usage(`--gpu-share: expected shares above 0 such as 0.5,1.2, got ${o['gpu-share']}`)
const started = Date.now()
const say = (line) => process.stdout.write(`[${((Date.now() - started) / 1000).toFixed(0)} s] ${line}\n`)
const work = mkdtempSync(join(tmpdir(), 'sollol-gpu-check-'))
const children = []
const cleanup = () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM')
}
process.on('exit', cleanup)
process.on('SIGINT', () => process.exit(130))

const run = (args) => execFileSync(process.execPath, [CLI, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] })
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

async function until(what, probe, timeoutMs, failed = () => false) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const why = failed()
    if (why) throw new Error(why)
    const value = await probe().catch(() => undefined)
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(500)
  }
}

/** Decode speed llama-server reports for `tokens` tokens (best of 3 after a warm-up). */
async function decode(url) {
  let best = 0
  for (let i = 0; i < 4; i++) {
    const response = await fetch(`${url}/completion`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'the river', n_predict: i === 0 ? 8 : Number(o.tokens), ignore_eos: true, cache_prompt: false }),
      signal: AbortSignal.timeout(300_000)
    })
    const ms = (await response.json()).timings?.predicted_per_token_ms
    if (i > 0 && typeof ms === 'number' && ms > 0) best = Math.max(best, 1000 / ms)
  }
  return best
}

function spawnLogged(file, args, name, env = {}) {
  const log = openSync(join(work, `${name}.log`), 'w')
  const child = spawn(file, args, { stdio: ['ignore', log, log], env: { ...process.env, ...env } })
  children.push(child)
  child.name = name
  return child
}

async function stop(child) {
  if (child.exitCode !== null) return
  child.kill('SIGTERM')
  await new Promise((resolve) => child.once('exit', resolve))
}

/** One agent on loopback holding the model; its decode speed once it serves. */
async function agentRun(name, extra) {
  const api = 7600 + Math.floor(Math.random() * 300)
  const agent = spawnLogged(
    process.execPath,
    [
      CLI,
      'start',
      '--data-dir',
      join(work, `${name}-data`),
      '--cluster',
      `gpu-check-${process.pid}-${name}`,
      '--no-mdns',
      '--p2p-host',
      '127.0.0.1',
      '--p2p-port',
      String(api + 1000),
      '--rpc-host',
      '127.0.0.1',
      '--rpc-port',
      String(api + 2000),
      '--rpc-access',
      'open', // loopback: nothing to gate
      '--api-host',
      '127.0.0.1',
      '--api-port',
      String(api),
      '--server-port',
      String(api + 3000),
      '--no-setup',
      '--model',
      model,
      '--ctx-size',
      '512',
      ...binArgs,
      ...extra
    ],
    name
  )
  try {
    const view = await until(
      `${name}: serving (log: ${join(work, `${name}.log`)})`,
      async () => {
        const v = await (await fetch(`http://127.0.0.1:${api}/v1/cluster`, { signal: AbortSignal.timeout(3000) })).json()
        return v.plan?.server.state === 'ready' ? v : undefined
      },
      300_000,
      () => agent.exitCode !== null && `the agent exited: ${readFileSync(join(work, `${name}.log`), 'utf8').slice(-2000)}`
    )
    const tokensPerSecond = await decode(view.plan.server.url)
    const self = view.nodes.find((n) => n.peerId === view.self)
    return {
      name,
      tokensPerSecond,
      predictedTokensPerSecond: view.plan.predictedTokensPerSecond,
      split: view.plan.assignments
        .map((a) => `${a.device ?? 'all'} ${a.layers ? a.layers.join('-') : '-'}${a.output ? '+out' : ''}`)
        .join(', '),
      mismatch: view.plan.mismatch,
      excluded: (view.plan.excluded ?? []).map((u) => `${u.device ?? u.peerId.slice(-6)}: ${u.reason}`),
      devices: self.devices
        .map(
          (d) =>
            `${d.name} ${d.speed ? `${d.speed.secondsPerGiB.toFixed(4)} s/GiB + ${((d.speed.fixedSecondsPerToken ?? 0) * 1000).toFixed(2)} ms` : 'unmeasured'}`
        )
        .join(', ')
    }
  } finally {
    await stop(agent)
  }
}

say('setup: llama.cpp with the prebuilt backends this machine can load')
const binArgs = o['bin-dir'] !== undefined ? ['--llama-bin-dir', o['bin-dir']] : []
const setup = JSON.parse(run(['setup', '--json', ...binArgs]))
const found = setup.devices.find((d) => d.name === o.device)
if (found === undefined) {
  say(
    `no ${o.device} here (devices: ${setup.devices.map((d) => d.name).join(', ') || 'none'}; backends: ${(setup.backends ?? []).join(', ')})`
  )
  process.exit(2)
}
say(`${o.device}: ${found.description}, ${Math.round(found.memoryTotal / MIB)} MiB; backends ${(setup.backends ?? []).join(', ')}`)
const model = join(work, 'model.gguf')
run([
  'test-model',
  '--out',
  model,
  '--layers',
  o.layers,
  '--embd',
  o.embd,
  '--ff',
  String(Number(o.embd) * 3),
  '--heads',
  String(Number(o.embd) / 64),
  '--type',
  'f16'
])
const modelBytes = statSync(model).size
// the device gets about gpu-share of the weights (plus its compute buffers); the CPU the rest

const gpuBudget = (share) => Math.round((modelBytes * share) / MIB) + 256
const cpuBudget = Math.round((modelBytes * 1.5) / MIB) + 512
say(
  `model: ${o.layers} layers x ${o.embd}, f16, ${(modelBytes / 1e6).toFixed(0)} MB; budgets ${o.device}=${shares.map(gpuBudget).join(' or ')}MiB, CPU=${cpuBudget}MiB`
)

const results = []
const record = (r) => {
  results.push(r)
  process.stdout.write(JSON.stringify(r) + '\n')
}
for (const share of runs.includes('mesh') ? shares : []) {
  const name = shares.length === 1 ? 'mesh' : `mesh-${Math.round(share * 100)}`
  record(
    await agentRun(name, ['--rpc-device', `${o.device},CPU`, '--max-memory', `${o.device}=${gpuBudget(share)}MiB,CPU=${cpuBudget}MiB`])
  )
}
if (runs.includes('cpu-only')) record(await agentRun('cpu-only', ['--rpc-device', 'CPU', '--max-memory', `${cpuBudget}MiB`]))

if (runs.includes('default')) await defaultSplit()

/** llama.cpp's default split by hand: the same devices, no --tensor-split */
async function defaultSplit() {
  const rpcPort = 7590
  const rpc = spawnLogged(
    join(dirname(setup.rpcServer), 'ggml-rpc-server'),
    ['-H', '127.0.0.1', '-p', String(rpcPort), '-d', `${o.device},CPU`],
    'rpc-server'
  )
  await sleep(2000)
  const llama = spawnLogged(
    setup.llamaServer,
    [
      '--rpc',
      `127.0.0.1:${rpcPort}`,
      '--device',
      'RPC0,RPC1',
      '-m',
      model,
      '-ngl',
      'all',
      '-c',
      '512',
      '--host',
      '127.0.0.1',
      '--port',
      '7599',
      '--no-warmup'
    ],
    'llama-server'
  )
  await until(
    'llama-server (default split)',
    async () => ((await fetch('http://127.0.0.1:7599/health')).status === 200 ? true : undefined),
    300_000
  )
  record({ name: 'default', tokensPerSecond: await decode('http://127.0.0.1:7599'), split: "llama.cpp's default (by free memory)" })
  await stop(llama)
  await stop(rpc)
}

const by = (name) => results.find((r) => r.name === name)?.tokensPerSecond ?? 0
const meshes = results.filter((r) => r.name.startsWith('mesh'))
process.stdout.write(
  `\n| run | decode tok/s | predicted | split |\n|---|---|---|---|\n` +
    results
      .map((r) => `| ${r.name} | ${r.tokensPerSecond.toFixed(1)} | ${r.predictedTokensPerSecond?.toFixed(1) ?? '-'} | ${r.split} |`)
      .join('\n') +
    '\n\n' +
    meshes
      .map((r) =>
        ['cpu-only', 'default']
          .filter((other) => by(other) > 0)
          .map((other) => `${r.name} / ${other} = ${(r.tokensPerSecond / by(other)).toFixed(2)}; `)
          .join('')
      )
      .join('') +
    `${((Date.now() - started) / 1000).toFixed(0)} s in all\n`
)
// the agents' logs and data dirs stay (what explains a device that was not measured); the model goes
rmSync(model, { force: true })
say(`logs: ${work}`)
