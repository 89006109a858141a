// Convergence of the mesh and the footprint of an idle agent. N agents (5, then 20) on their own test hosts
// discover each other by mDNS. Measured, each as the time until every agent's /v1/cluster lists all N:
//  - join (the target): N-1 agents run and agree; the last agent starts; timed from its start.
//  - cold start: all N processes started at once; timed from the last start. On this 2-core machine this
//    mostly measures N Node.js processes booting on 2 cores (a LAN has a CPU per agent), so it is reported,
//    not held to the target.
// A warm-up start first (each agent's rpc-server speed is measured once and kept, as after any first
// start; the warm-up waits for every agent measured). Then, at rest: gossip messages and bytes per agent per
// second, and each idle agent's RSS and CPU share (5 agents 45 s after the last joined; 20 agents 45 s and
// 5 minutes after, the target taken at 5 minutes: see SETTLE_SECONDS). Targets for 20: the last one in every view <= 5 s after its start; at rest each
// agent <= 5 kB/s on the wire (everything: heartbeats, gossip, mDNS, pings) and <= 1 % of a core. The observer polls each agent every 200 ms, on its own, and stops once it is complete.
import { createWriteStream, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { TestNetwork } from '../../test/dist/helpers/netns.js'
import { CLI, fmt, interfaceCounters, processUsage, runScript, sleep, summary, table } from './lib.mjs'

// Runs in a test host: polls every agent's API until all list `n` nodes (with `ready`: n nodes whose
// rpc-server is measured and ready); prints when. Each agent is polled on its own (every 200 ms after its
// last answer): in rounds over all agents, one slow answer (the newcomer's, its CPU busy with its join) held
// back the next look at every other agent, up to the 1 s fetch timeout, and that wait was counted as join.
const CONVERGED = `
const [n, deadline, ready, ...urls] = [Number(process.argv[1]), Date.now() + Number(process.argv[2]), process.argv[3] === 'ready', ...process.argv.slice(4)]
const count = async (u) => { try { const r = await fetch(u + '/v1/cluster', { signal: AbortSignal.timeout(1000) }); const { nodes } = await r.json(); return nodes.filter((x) => !ready || x.rpc.state === 'ready').length } catch { return 0 } }
const watch = async (u) => { for (;;) { if ((await count(u)) === n) return Date.now(); if (Date.now() > deadline) return null; await new Promise((r) => setTimeout(r, 200)) } }
const done = await Promise.all(urls.map(watch))
if (done.every((at) => at !== null)) { console.log(JSON.stringify({ at: Math.max(...done) })); process.exit(0) }
console.log(JSON.stringify({ at: null, counts: await Promise.all(urls.map(count)) })); process.exit(1)
`
const COUNTERS = `
const urls = process.argv.slice(1)
console.log(JSON.stringify(await Promise.all(urls.map(async (u) => (await (await fetch(u + '/v1/cluster')).json()).counters))))
`

// At rest begins after start-up's one-off work. V8's memory reducer runs three full (marking) GCs once a
// process's allocation rate drops after its start: seen with --trace-gc 20-35 s after an agent's start in a
// 5-agent mesh and 90-110 s in a 20-agent one, 7-15 ms of pause plus 10-25 ms of marking steps each, and the
// concurrent marking on V8's helper threads. Inside a 15 s window that one-off cost was 0.5-1 % of a core.
// And code that runs every few seconds takes minutes to be optimized: a minute after the start, most of
// an idle agent's main thread is still the interpreter, and TurboFan compiles on a helper thread
// (`perf record`; docs/benchmarks.md). So the 5-agent footprint is measured 45 s after convergence, and the
// 20 agents twice: 45 s after the 20th joined (reported) and 5 minutes after (the target: an agent runs for
// days; scripts/probes/idle.mjs measured 0.67-1.00 % per agent there against 1.2-2.1 % at 45 s).
const SETTLE_SECONDS = 45
const STEADY_SECONDS = 300

function startAgents(network, dir, which = network.hosts.map((_, i) => i)) {
  return which.map((i) => {
    const host = network.hosts[i]
    const log = createWriteStream(join(dir, `agent-${i + 1}.log`), { flags: 'a' })
    const child = host.run(
      process.execPath,
      [
        CLI,
        'start',
        '--data-dir',
        join(dir, `data-${i + 1}`),
        '--no-setup',
        '--api-host',
        host.address,
        '--rpc-threads',
        '1',
        '--max-memory',
        '64MiB',
        '--log-level',
        'warn'
      ],
      { buffer: false, stdin: 'ignore' }
    )
    child.stdout?.pipe(log)
    child.stderr?.pipe(log)
    return child
  })
}

async function stopAgents(children) {
  for (const c of children) c.kill('SIGTERM')
  await Promise.all(children)
}

/**
 * Starts the agents `which` (the others already run), and times until every view lists all `n` (`until:
 * 'ready'`: all `n` measured and ready).
 */
async function converge(network, dir, n, timeoutMs, which, running = [], until = 'listed') {
  const urls = network.hosts.slice(0, n).map((h) => `http://${h.address}:7491`)
  const watcher = runScript(network.hosts[0], CONVERGED, [n, timeoutMs, until, ...urls])
  const children = [...running, ...startAgents(network, dir, which)]
  const lastStart = Date.now()
  const { at, counts } = await watcher
  if (at === null) {
    await stopAgents(children)
    throw new Error(`${n} agents did not converge within ${timeoutMs} ms (views: ${counts.join(',')})`)
  }
  return { children, seconds: (at - lastStart) / 1000, urls }
}

/** N-1 agents agree (untimed), then the last one starts: the time until all N list all N. */
async function lastJoins(network, dir, n, timeoutMs) {
  const all = network.hosts.map((_, i) => i)
  const first = all.slice(0, n - 1)
  const urls = network.hosts.slice(0, n - 1).map((h) => `http://${h.address}:7491`)
  const watcher = runScript(network.hosts[0], CONVERGED, [n - 1, timeoutMs * 3, 'listed', ...urls])
  const running = startAgents(network, dir, first)
  const { at, counts } = await watcher
  if (at === null) {
    await stopAgents(running)
    throw new Error(`${n - 1} agents did not converge within ${timeoutMs * 3} ms (views: ${counts.join(',')})`)
  }
  return await converge(network, dir, n, timeoutMs, [n - 1], running)
}

/** Traffic and footprint over `seconds`, from `settleSeconds` from now (see SETTLE_SECONDS). */
async function atRest(network, children, urls, seconds, withFootprint, settleSeconds) {
  await sleep(settleSeconds * 1000)
  const counters0 = await runScript(network.hosts[0], COUNTERS, urls)
  const if0 = await Promise.all(network.hosts.map(interfaceCounters))
  const usage0 = children.map((c) => processUsage(c.pid))
  const t0 = Date.now()
  await sleep(seconds * 1000) // a measurement window, not a wait for a condition
  const elapsed = (Date.now() - t0) / 1000
  const if1 = await Promise.all(network.hosts.map(interfaceCounters))
  const usage1 = children.map((c) => processUsage(c.pid))
  // the counters after the bytes and CPU: each agent's /v1/cluster answer (it grows with the members) and
  // building it were counted inside the window, as the agents' own traffic and CPU
  const counters1 = await runScript(network.hosts[0], COUNTERS, urls)
  const perAgent = (f) => network.hosts.map((_, i) => f(i) / elapsed)
  const result = {
    windowSeconds: Math.round(elapsed),
    announcementsOutPerSecond: summary(perAgent((i) => counters1[i].announcementsOut - counters0[i].announcementsOut)),
    announcementsInPerSecond: summary(perAgent((i) => counters1[i].announcementsIn - counters0[i].announcementsIn)),
    // everything on the wire at rest: gossipsub, mDNS, identify, ping
    bytesPerSecond: summary(perAgent((i) => if1[i].txBytes - if0[i].txBytes + (if1[i].rxBytes - if0[i].rxBytes))),
    packetsPerSecond: summary(perAgent((i) => if1[i].txPackets - if0[i].txPackets + (if1[i].rxPackets - if0[i].rxPackets))),
    // what the mesh did in the window, all agents together: at rest all of these should be 0 (a window of
    // 6 % of a core and 16 kB/s per agent once, with no more said, is why they are counted)
    events: Object.fromEntries(
      ['connectionsOpened', 'livenessReportsOut', 'refutations', 'announcementsFetched', 'introductionsFetched'].map((k) => [
        k,
        counters1.reduce((sum, c, i) => sum + ((c[k] ?? 0) - (counters0[i][k] ?? 0)), 0)
      ])
    )
  }
  if (withFootprint) {
    result.footprint = {
      rssMB: summary(usage1.map((u) => u.rss / 1e6)),
      cpuPercent: summary(usage1.map((u, i) => ((u.cpuSeconds - usage0[i].cpuSeconds) / elapsed) * 100))
    }
  }
  return result
}

export async function benchConvergence({ quick, log }) {
  const result = {}
  const window = quick ? 15 : 30
  for (const [n, runs, timeoutMs] of [
    [5, quick ? 3 : 5, 60_000],
    [20, quick ? 2 : 3, 180_000]
  ]) {
    const dir = mkdtempSync(join(tmpdir(), `sollol-bench-convergence-${n}-`))
    const network = TestNetwork.create(Array.from({ length: n }, () => ({})))
    const joins = []
    const colds = []
    let rest
    let early
    try {
      // warm-up: every agent measures its rpc-server once and keeps the result. It waits for every agent
      // measured, not only listed: an agent stopped while it measures keeps nothing and measures again at
      // its next start, which loaded the runs below (20 two-size calibrations at once on 2 cores).
      const all = network.hosts.map((_, i) => i)
      const warm = await converge(network, dir, n, timeoutMs * 3, all, [], 'ready')
      await stopAgents(warm.children)
      for (let r = 1; r <= runs; r++) {
        const joined = await lastJoins(network, dir, n, timeoutMs)
        joins.push(joined.seconds)
        log(`${n} agents, run ${r}: the last agent to start is in every view after ${fmt(joined.seconds)} s`)
        if (r === runs) {
          rest = await atRest(network, joined.children, joined.urls, window, true, SETTLE_SECONDS)
          log(`${n} agents at rest, ${SETTLE_SECONDS} s after the last joined, in ${window} s: ${JSON.stringify(rest.events)}`)
          if (n === 20) {
            early = { secondsAfterJoin: SETTLE_SECONDS, cpuPercent: rest.footprint.cpuPercent, bytesPerSecond: rest.bytesPerSecond }
            log(
              `${n} agents at rest, ${SETTLE_SECONDS} s after the last joined: CPU median ${fmt(early.cpuPercent.median)} % of a core per agent (reported)`
            )
            rest = await atRest(network, joined.children, joined.urls, window, true, STEADY_SECONDS - SETTLE_SECONDS - window)
            log(`${n} agents at rest, ${STEADY_SECONDS} s after the last joined, in ${window} s: ${JSON.stringify(rest.events)}`)
          }
        }
        await stopAgents(joined.children)
        const cold = await converge(network, dir, n, timeoutMs, all)
        colds.push(cold.seconds)
        log(`${n} agents, run ${r}: all started at once, every view lists all ${n} after ${fmt(cold.seconds)} s`)
        await stopAgents(cold.children)
      }
    } finally {
      network.destroy()
      if (process.env.KEEP_BENCH_LOGS !== '1') rmSync(dir, { recursive: true, force: true })
    }
    const { footprint, ...gossip } = rest
    result[`agents${n}`] = {
      seconds: summary(joins),
      coldStartSeconds: summary(colds),
      atRest: {
        ...gossip,
        ...(n === 20
          ? {
              secondsAfterJoin: STEADY_SECONDS,
              cpuPercent: footprint.cpuPercent,
              afterStartUp: early,
              targets: { bytesPerSecond: 5000, cpuPercent: 1 }
            }
          : {})
      },
      target: n === 5 ? '<= 3 s' : '<= 5 s'
    }
    if (n === 5) result.footprint = { agents: n, ...footprint, targets: { rssMB: 150, cpuPercent: 2 } }
  }
  const f = result.footprint
  log(
    '\n' +
      table([
        [
          'agents',
          'last joins (median s)',
          'min',
          'max',
          'runs',
          'cold start (median s)',
          'gossip out msg/s/agent',
          'in msg/s/agent',
          'bytes/s/agent (all traffic)',
          'CPU % of a core/agent'
        ],
        ...[5, 20].map((n) => {
          const r = result[`agents${n}`]
          return [
            n,
            fmt(r.seconds.median),
            fmt(r.seconds.min),
            fmt(r.seconds.max),
            r.seconds.n,
            fmt(r.coldStartSeconds.median),
            fmt(r.atRest.announcementsOutPerSecond.median),
            fmt(r.atRest.announcementsInPerSecond.median),
            fmt(r.atRest.bytesPerSecond.median, 0),
            r.atRest.cpuPercent !== undefined ? fmt(r.atRest.cpuPercent.median) : fmt(f.cpuPercent.median)
          ]
        })
      ]) +
      `\nidle agent (5-agent mesh, ${window} s from ${SETTLE_SECONDS} s after convergence): RSS median ${fmt(f.rssMB.median, 0)} MB (max ${fmt(f.rssMB.max, 0)}), CPU median ${fmt(f.cpuPercent.median)} % of a core (max ${fmt(f.cpuPercent.max)})`
  )
  return result
}
