// Diagnostic probe (not a benchmark, no target): N agents on their own test hosts, at rest, and each
// agent's CPU split by thread (the main thread, V8's helper threads, libuv's pool), read from /proc.
//
//   node scripts/probes/idle.mjs [N=5] [--prof]     (root: test hosts are network namespaces)
//
// Every agent starts twice: once to create its identity, then measured. Speeds are given (--rpc-speed), so
// no calibration runs beside the measurement. Environment: SETTLE (s after every agent is ready, 45),
// WINDOW (s measured, 20), HOLD (s to keep the agents running afterwards, for perf or strace: their pids
// are printed), NODE_FLAGS (extra node flags for every agent, e.g. --trace-gc), LEVEL (log level, warn).
// --prof: agent 1 runs with --cpu-prof (the profile lands in the printed directory).
// CAPTURE=1: tcpdump (apt-get install tcpdump) on host 1's eth0 during the window; bytes per second split
// into mDNS (udp 5353), other UDP and TCP, mDNS queries and answers counted, and mDNS's busiest 15 s.
import { mkdtempSync, readFileSync, readdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'
import { TestNetwork } from '../../test/dist/helpers/netns.js'
import { runScript, sleep } from '../bench/lib.mjs'
import { nodeFlagsFrom, startIdleAgent } from './lib.mjs'

const n = Number(process.argv.slice(2).find((a) => /^\d+$/.test(a)) ?? 5)
const prof = process.argv.includes('--prof')
const env = (name, fallback) => Number(process.env[name] ?? fallback)
const dir = mkdtempSync(join(tmpdir(), 'sollol-probe-idle-'))
const network = TestNetwork.create(Array.from({ length: n }, () => ({})))

const READY = `
console.log(JSON.stringify(await Promise.all(process.argv.slice(1).map(async (u) => {
  try { return (await (await fetch(u, { signal: AbortSignal.timeout(2000) })).json()).nodes.filter((x) => x.rpc.state === 'ready').length } catch { return 0 }
}))))`

function startAll(measured) {
  return network.hosts.map((_, i) => {
    const nodeFlags = nodeFlagsFrom('NODE_FLAGS')
    if (measured && prof && i === 0) nodeFlags.push('--cpu-prof', '--cpu-prof-dir', dir)
    return startIdleAgent(network, dir, i, { level: process.env.LEVEL ?? 'warn', nodeFlags })
  })
}

async function allReady() {
  const urls = network.hosts.map((h) => `http://${h.address}:7491/v1/cluster`)
  for (;;) {
    if ((await runScript(network.hosts[0], READY, urls)).every((c) => c === n)) return
    await sleep(500)
  }
}

/** CPU ticks (1/100 s) per thread of a process. */
function threadTicks(pid) {
  const ticks = {}
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    ticks[`${tid}:${stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))}`] = Number(fields[11]) + Number(fields[12])
  }
  return ticks
}

function startCapture(host) {
  const file = join(dir, 'host1.pcap')
  const child = execa('ip', ['netns', 'exec', host.name, 'tcpdump', '-i', 'eth0', '-nn', '-s', '96', '-w', file], { reject: false })
  return { child, file }
}

async function summarizeCapture({ child, file }, seconds) {
  child.kill('SIGINT')
  await child
  const lines = (await execa('tcpdump', ['-r', file, '-nn', '-v', '-tt'], { reject: false })).stdout.split('\n')
  const bytes = { mdns: 0, udp: 0, tcp: 0, other: 0 }
  let queries = 0
  let answers = 0
  const mdnsBySecond = new Map()
  for (let i = 0; i < lines.length; i++) {
    const ip = /proto (\w+) .*length (\d+)\)/.exec(lines[i])
    if (ip === null) continue
    const [proto, length] = [ip[1], Number(ip[2])]
    const next = lines[i + 1] ?? ''
    if (proto === 'UDP' && /\.5353[ :]/.test(next)) {
      bytes.mdns += length
      const second = Math.floor(Number(lines[i].split(' ')[0]))
      mdnsBySecond.set(second, (mdnsBySecond.get(second) ?? 0) + length)
      // a question reads "PTR (QM)? name" or "PTR? name"; an answer lists its records
      if (/\? \S/.test(next)) queries++
      else answers++
    } else if (proto === 'UDP') bytes.udp += length
    else if (proto === 'TCP') bytes.tcp += length
    else bytes.other += length
  }
  const rate = (b, s = seconds) => `${(b / s / 1000).toFixed(2)} kB/s`
  // the busiest 15 s (the bench's quick at-rest window) of mDNS
  const busiest = Math.max(
    0,
    ...[...mdnsBySecond.keys()].map((t) => [...mdnsBySecond].reduce((sum, [u, b]) => (u >= t && u < t + 15 ? sum + b : sum), 0))
  )
  return `host 1, eth0, ${seconds.toFixed(0)} s: mDNS ${rate(bytes.mdns)} (${queries} queries, ${answers} answers; busiest 15 s ${rate(busiest, 15)}), other UDP ${rate(bytes.udp)}, TCP ${rate(bytes.tcp)}, other ${rate(bytes.other)}`
}

async function stopAll(children) {
  for (const c of children) c.kill('SIGTERM')
  await Promise.allSettled(children)
}

try {
  const children = startAll(false)
  await allReady()
  await stopAll(children)
  const agents = startAll(true)
  await allReady()
  console.log(`all ${n} ready; settling ${env('SETTLE', 45)} s`)
  await sleep(env('SETTLE', 45) * 1000)
  const before = agents.map((c) => threadTicks(c.pid))
  const capture = process.env.CAPTURE === '1' ? startCapture(network.hosts[0]) : undefined
  const t0 = Date.now()
  await sleep(env('WINDOW', 20) * 1000)
  const seconds = (Date.now() - t0) / 1000
  if (capture !== undefined) console.log(await summarizeCapture(capture, seconds))
  agents.forEach((c, i) => {
    const after = threadTicks(c.pid)
    const share = Object.entries(after).map(([k, v]) => [k, (v - (before[i][k] ?? 0)) / seconds])
    const total = share.reduce((sum, [, v]) => sum + v, 0)
    const busy = share.filter(([, v]) => v > 0).map(([k, v]) => `${k} ${v.toFixed(2)}`)
    console.log(`agent ${i + 1} (pid ${c.pid}): ${total.toFixed(2)} % of a core; by thread: ${busy.join(', ')}`)
  })
  await sleep(env('HOLD', 0) * 1000)
  await stopAll(agents)
} finally {
  network.destroy()
  console.log(`logs (and a profile with --prof) in ${dir}`)
}
