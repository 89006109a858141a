#!/usr/bin/env node
// The cost of the rpc protection: decode tokens/s of the same 2-host cluster with the worker's rpc-server
// behind the gate (default), behind the mesh tunnel, and open on the LAN (--rpc-access open), alternated
// round by round on an 84 MB generated model. Runs on test hosts in network namespaces (root).
//   node scripts/bench-rpc-protection.mjs [--rounds 2] [--runs 5] [--modes gated,tunnel,open]
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DEFAULT_TEST_MODEL, writeTestModel } from '@sollol/gguf'
import { TestNetwork } from '../test/dist/helpers/netns.js'
import { TestAgent } from '../test/dist/helpers/agents.js'
import { waitFor } from '../test/dist/helpers/wait.js'

const argv = process.argv.slice(2)
const option = (name, fallback) => (argv.includes(name) ? Number(argv[argv.indexOf(name) + 1]) : fallback)
const rounds = option('--rounds', 2)
const runs = option('--runs', 5)
const dir = mkdtempSync(join(tmpdir(), 'sollol-bench-'))
const model = join(dir, 'model.gguf')
writeTestModel(model, { ...DEFAULT_TEST_MODEL, layers: 16, embd: 512, ff: 1024, heads: 8, type: 'f16' })
const network = TestNetwork.create([{}, {}])
const [h1, h2] = network.hosts

const DECODE = `
const r = await fetch(process.argv[1] + '/completion', { method: 'POST', headers: { 'content-type': 'application/json' },
  body: JSON.stringify({ prompt: 'once upon a time', n_predict: 64, temperature: 0, cache_prompt: false }) })
const b = await r.json(); console.log(b.timings.predicted_per_second)
`

async function measure(mode) {
  const extra = ['--rpc-access', mode]
  const agents = [
    new TestAgent(h1, dir, ['--rpc-threads', '1', '--ctx-size', '512', '--model', model, '--max-memory', '60MiB', ...extra]),
    new TestAgent(h2, dir, ['--rpc-threads', '1', '--max-memory', '1GiB', ...extra])
  ]
  try {
    for (const a of agents) a.start()
    const view = await waitFor(
      'serving',
      () => {
        const v = agents[0].view()
        return v?.plan?.server.state === 'ready' && v.plan.assignments.some((x) => x.peerId === agents[1].view()?.self) ? v : undefined
      },
      { timeoutMs: 120_000 }
    )
    const speeds = []
    for (let i = 0; i < runs + 1; i++) {
      const r = await h2.run(process.execPath, ['--input-type=module', '-e', DECODE, view.plan.server.url])
      if (i > 0) speeds.push(Number(String(r.stdout).trim())) // the first run warms up
    }
    return speeds
  } finally {
    await Promise.all(agents.map((a) => a.stop()))
  }
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}
const modes = argv.includes('--modes') ? argv[argv.indexOf('--modes') + 1].split(',') : ['gated', 'tunnel', 'open']
const results = Object.fromEntries(modes.map((m) => [m, []]))
try {
  for (let round = 0; round < rounds; round++) {
    for (const mode of modes) {
      const speeds = await measure(mode)
      results[mode].push(...speeds)
      console.log(`round ${round + 1} ${mode}: ${speeds.map((s) => s.toFixed(1)).join(' ')} tok/s`)
    }
  }
  const open = median(results.open)
  const summary = Object.fromEntries(
    modes.map((m) => [
      m,
      {
        medianTokensPerSecond: median(results[m]),
        range: [Math.min(...results[m]), Math.max(...results[m])],
        ratioToOpen: median(results[m]) / open
      }
    ])
  )
  console.log(JSON.stringify({ model: '16x512 f16, 84 MB', runsPerMode: results[modes[0]].length, ...summary }, null, 2))
} finally {
  network.destroy()
  rmSync(dir, { recursive: true, force: true })
}
