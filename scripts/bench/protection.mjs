// The cost of the rpc protection: decode tokens/s of the same 2-host cluster with the worker's rpc-server
// behind the gate (the default), behind the mesh tunnel, and open to the LAN (--rpc-access open), the three
// alternated round by round, on an 84 MB generated model. The worker holds most layers, so RPC traffic counts.
// The cluster is keyed, so tunnel traffic goes through the cluster key's cipher as well as Noise; the load
// throughput (model bytes / llama-server's load time, as the coordinator logs it) is measured for each mode.
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DEFAULT_TEST_MODEL, writeTestModel } from '@sollol/gguf'
import { TestNetwork } from '../../test/dist/helpers/netns.js'
import { TestAgent } from '../../test/dist/helpers/agents.js'
import { generateClusterKey } from '@sollol/mesh'
import { decode, fmt, summary, table, waitUntil } from './lib.mjs'

const MODES = ['gated', 'tunnel', 'open']

export async function benchProtection({ quick, log }) {
  const rounds = quick ? 1 : 2
  const runs = quick ? 3 : 5
  const dir = mkdtempSync(join(tmpdir(), 'sollol-bench-protection-'))
  const model = join(dir, 'model.gguf')
  writeTestModel(model, { ...DEFAULT_TEST_MODEL, layers: 16, embd: 512, ff: 1024, heads: 8, type: 'f16' })
  const modelBytes = statSync(model).size
  const key = join(dir, 'cluster.key')
  writeFileSync(key, generateClusterKey(), { mode: 0o600 })
  const network = TestNetwork.create([{}, {}])
  const [h1, h2] = network.hosts
  const speeds = Object.fromEntries(MODES.map((m) => [m, []]))
  const loads = Object.fromEntries(MODES.map((m) => [m, []]))
  try {
    for (let round = 1; round <= rounds; round++) {
      for (const mode of MODES) {
        const extra = ['--rpc-access', mode, '--rpc-threads', '1', '--cluster-key', key]
        const agents = [
          new TestAgent(h1, dir, [...extra, '--ctx-size', '512', '--model', model, '--max-memory', '60MiB']),
          new TestAgent(h2, dir, [...extra, '--max-memory', '1GiB'])
        ]
        try {
          for (const a of agents) a.start()
          const view = await waitUntil(
            `serving with rpc-access ${mode}`,
            () => {
              const v = agents[0].view()
              return v?.plan?.server.state === 'ready' && v.plan.assignments.some((x) => x.peerId === agents[1].view()?.self)
                ? v
                : undefined
            },
            180_000
          )
          const loadMs = [...agents[0].log().matchAll(/"loadMs":(\d+),[^\n]*"llama-server ready"/g)].pop()?.[1]
          if (loadMs !== undefined) loads[mode].push(modelBytes / 1e6 / (Number(loadMs) / 1000))
          await decode(h2, view.plan.server.url, 8, 1)
          const got = await decode(h2, view.plan.server.url, 64, runs)
          speeds[mode].push(...got)
          log(`round ${round} ${mode}: ${got.map((s) => fmt(s, 1)).join(' ')} tok/s; load ${fmt(loads[mode].at(-1) ?? NaN, 1)} MB/s`)
        } finally {
          await Promise.all(agents.map((a) => a.stop()))
        }
      }
    }
  } finally {
    network.destroy()
    rmSync(dir, { recursive: true, force: true })
  }
  const stats = Object.fromEntries(MODES.map((m) => [m, summary(speeds[m])]))
  const loadStats = Object.fromEntries(MODES.map((m) => [m, summary(loads[m])]))
  const result = {
    model: '16 layers x 512, f16, 84 MB; the worker holds most layers',
    rounds,
    runs,
    tokensPerSecond: stats,
    loadMBps: loadStats,
    tunnelLoadOverGated: loadStats.tunnel.median / loadStats.gated.median,
    gatedOverOpen: stats.gated.median / stats.open.median,
    tunnelOverOpen: stats.tunnel.median / stats.open.median,
    target: 'gated within 10 % of open'
  }
  log(
    '\n' +
      table([
        ['rpc access', 'median tok/s', 'min', 'max', 'n', 'ratio to open', 'load MB/s (median)'],
        ...MODES.map((m) => [
          m,
          fmt(stats[m].median, 1),
          fmt(stats[m].min, 1),
          fmt(stats[m].max, 1),
          stats[m].n,
          fmt(stats[m].median / stats.open.median, 3),
          fmt(loadStats[m].median, 1)
        ])
      ])
  )
  return result
}
