// Diagnostic probe (not a benchmark, no target): N-1 agents on their own test hosts agree and rest, then
// the N-th starts with its log at debug; prints when each view listed all N, and the newcomer's log
// (connections, introductions, duplicates closed) lies in the printed directory for a timeline.
//
//   node scripts/probes/join.mjs [N=20] [RUNS=2]     (root: test hosts are network namespaces)
//
// Speeds are given (--rpc-speed): no calibration runs. Environment: SETTLE (s of rest before the
// newcomer starts, 10; the benchmark starts it at once), NODE_FLAGS (extra node flags for the newcomer,
// e.g. --cpu-prof), OTHERS_LEVEL (the others' log level, warn; with info the probe also prints when the
// newcomer met each member and each member met it: through a connection's hello or through gossip).
// The first run includes every agent's first start (its identity is created).
import { mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { TestNetwork } from '../../test/dist/helpers/netns.js'
import { runScript, sleep } from '../bench/lib.mjs'
import { nodeFlagsFrom, startIdleAgent } from './lib.mjs'

const [n, runs] = [Number(process.argv[2] ?? 20), Number(process.argv[3] ?? 2)]
const dir = mkdtempSync(join(tmpdir(), 'sollol-probe-join-'))
const network = TestNetwork.create(Array.from({ length: n }, () => ({})))
const urls = (k) => network.hosts.slice(0, k).map((h) => `http://${h.address}:7491`)
const othersLevel = process.env.OTHERS_LEVEL ?? 'warn'

/** Agent i's log lines of the minute from `startedAt`. */
function logLines(i, startedAt) {
  return readFileSync(join(dir, `agent-${i + 1}.log`), 'utf8')
    .split('\n')
    .flatMap((line) => {
      try {
        return [JSON.parse(line)]
      } catch {
        return []
      }
    })
    .filter((l) => l.time >= startedAt && l.time < startedAt + 60_000)
}

/** ms after `startedAt` of each 'peer joined' line in agent i's log, for `peer` (any when undefined). */
const joinedAt = (i, startedAt, peer) =>
  logLines(i, startedAt)
    .filter((l) => l.msg === 'peer joined' && (peer === undefined || l.peer === peer))
    .map((l) => l.time - startedAt)

// Runs in a test host: when each agent's view listed `n` nodes (120 s at most).
const WATCH = `
const [n, ...urls] = [Number(process.argv[1]), ...process.argv.slice(2)]
const t0 = Date.now()
const done = new Map()
const last = new Map()
const count = async (u) => { try { return (await (await fetch(u + '/v1/cluster', { signal: AbortSignal.timeout(1000) })).json()).nodes.length } catch (err) { return err.name } }
// each agent on its own (as the benchmark does): one slow answer does not hold back the look at the others
await Promise.all(urls.map(async (u) => {
  while (Date.now() - t0 < 120000) {
    const seen = await count(u)
    last.set(u, seen)
    if (seen === n) return done.set(u, Date.now())
    await new Promise((r) => setTimeout(r, 200))
  }
}))
// a view that never listed n: what it last said (a node count, or why the request failed)
console.log(JSON.stringify({ ...Object.fromEntries(done), missing: Object.fromEntries([...last].filter(([u]) => !done.has(u))) }))
process.exit(0)`

try {
  for (let run = 1; run <= runs; run++) {
    const first = Array.from({ length: n - 1 }, (_, i) => startIdleAgent(network, dir, i, { level: othersLevel }))
    await runScript(network.hosts[0], WATCH, [n - 1, ...urls(n - 1)])
    await sleep(Number(process.env.SETTLE ?? 10) * 1000)
    const watcher = runScript(network.hosts[0], WATCH, [n, ...urls(n)])
    const startedAt = Date.now()
    const newcomer = startIdleAgent(network, dir, n - 1, { level: 'debug', nodeFlags: nodeFlagsFrom('NODE_FLAGS') })
    const { missing, ...at } = await watcher
    const own = at[urls(n)[n - 1]]
    const others = urls(n - 1)
      .map((u) => (at[u] ?? NaN) - startedAt)
      .sort((a, b) => a - b)
    console.log(
      `run ${run} (newcomer started at ${startedAt}): in every view after ${Math.max(...Object.values(at)) - startedAt} ms ` +
        `(${Object.keys(at).length}/${n} views complete); its own view ${own - startedAt} ms; the others' median ${others[Math.floor(others.length / 2)]} ms`
    )
    if (Object.keys(missing).length > 0) console.log(`  views that never listed ${n}, as they last answered: ${JSON.stringify(missing)}`)
    const duplicates = logLines(n - 1, startedAt).filter((l) => l.msg === 'closing a duplicate connection').length
    console.log(`  duplicate connections the newcomer closed: ${duplicates}`)
    if (othersLevel === 'info' || othersLevel === 'debug') {
      const id = logLines(n - 1, startedAt).find((l) => l.msg === 'mesh started')?.peerId
      const sorted = (xs) => xs.sort((a, b) => a - b).join(' ')
      console.log(`  the newcomer met each member after (ms): ${sorted(joinedAt(n - 1, startedAt))}`)
      console.log(
        `  each member met the newcomer after (ms): ${sorted(Array.from({ length: n - 1 }, (_, i) => joinedAt(i, startedAt, id)).flat())}`
      )
    }
    first.push(newcomer)
    for (const c of first) c.kill('SIGTERM')
    await Promise.allSettled(first)
  }
} finally {
  network.destroy()
  console.log(`logs in ${dir}`)
}
