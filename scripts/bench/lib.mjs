// Shared pieces of the benchmarks: statistics, tables, CPU-quota groups, agents and clients inside test hosts.
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { execa } from 'execa'
import { CLI, ROOT } from '../../test/dist/helpers/agents.js'

export { CLI, ROOT }

export const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  if (s.length === 0) return NaN
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}

/** Median with the spread (min, max) and the number of samples. */
export const summary = (xs) => ({ median: median(xs), min: Math.min(...xs), max: Math.max(...xs), n: xs.length, samples: xs })

export const fmt = (x, digits = 2) => (Number.isFinite(x) ? x.toFixed(digits) : String(x))

/** A fixed-width table. */
export function table(rows) {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => String(r[i] ?? '').length)))
  return rows
    .map((r) =>
      r
        .map((c, i) => String(c ?? '').padEnd(widths[i]))
        .join('  ')
        .trimEnd()
    )
    .join('\n')
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

export async function waitUntil(what, probe, timeoutMs, intervalMs = 100) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await probe()
    if (value !== undefined && value !== false) return value
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(intervalMs)
  }
}

/**
 * A CPU quota (cgroup v1 `cpu` or v2): processes started through `wrap` and all their children get at
 * most `cores` of CPU time. The quota is how the benchmark makes unequal machines on one box. A fraction
 * of a core uses a short period (4 ms): a pipeline stage computes in bursts of a millisecond or two, and
 * with the default 100 ms period such bursts would run at full speed until the budget ran out, so the
 * "slow" machine would not be slow.
 */
export class CpuGroup {
  constructor(name, cores) {
    this.cores = cores
    const period = cores < 1 ? 4000 : 100000
    const v1 = '/sys/fs/cgroup/cpu'
    if (existsSync(join(v1, 'cpu.cfs_quota_us')) || existsSync(v1 + '/tasks')) {
      this.path = join(v1, name)
      mkdirSync(this.path, { recursive: true })
      writeFileSync(join(this.path, 'cpu.cfs_period_us'), String(period))
      writeFileSync(join(this.path, 'cpu.cfs_quota_us'), String(Math.round(cores * period)))
    } else {
      this.path = join('/sys/fs/cgroup', name)
      mkdirSync(this.path, { recursive: true })
      writeFileSync(join(this.path, 'cpu.max'), `${Math.round(cores * period)} ${period}`)
    }
  }
  /** argv that runs `file args` inside the group. */
  wrap(file, args) {
    return ['/bin/sh', ['-c', `echo $$ > ${this.path}/cgroup.procs && exec "$@"`, 'sh', file, ...args]]
  }
  destroy() {
    try {
      rmdirSync(this.path)
    } catch {}
  }
}

/** A test host whose commands run inside a CPU group (for agents and their llama.cpp children). */
export function quotaHost(host, group) {
  return {
    ...host,
    run: (file, args, options) => {
      const [f, a] = group.wrap('ip', ['netns', 'exec', host.name, file, ...args])
      return execa(f, a, { reject: false, ...options })
    }
  }
}

/** Runs a small ES module script inside a host and parses the JSON it prints last. */
export async function runScript(host, source, args = [], options = {}) {
  const result = await host.run(process.execPath, ['--input-type=module', '-e', source, ...args.map(String)], { cwd: ROOT, ...options })
  const last = String(result.stdout).trim().split('\n').pop() ?? ''
  try {
    return JSON.parse(last)
  } catch {
    throw new Error(`script in ${host.name} printed no JSON (exit ${result.exitCode}): ${String(result.stderr).slice(-500)}`)
  }
}

/** Decode speed (tokens/s as llama-server measures it, prompt excluded), `reps` times. */
export const DECODE = `
const [url, n, reps] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3])]
const out = []
for (let i = 0; i < reps; i++) {
  const r = await fetch(url + '/completion', { method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ prompt: 'once upon a time', n_predict: n, temperature: 0, ignore_eos: true, cache_prompt: false }) })
  const b = await r.json()
  if (!b.timings) throw new Error(JSON.stringify(b).slice(0, 300))
  out.push(b.timings.predicted_per_second)
}
console.log(JSON.stringify(out))
`

export async function decode(host, url, tokens, reps) {
  return await runScript(host, DECODE, [url, tokens, reps])
}

/** Prompt speed (prompt tokens/s as llama-server measures it) of a 128-token prompt of token ids, `reps` times. */
export const PROMPT = `
const [url, reps] = [process.argv[1], Number(process.argv[2])]
const prompt = Array.from({ length: 128 }, (_, i) => 260 + (i % 150))
const out = []
for (let i = 0; i < reps; i++) {
  const r = await fetch(url + '/completion', { method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ prompt, n_predict: 1, temperature: 0, cache_prompt: false }) })
  const b = await r.json()
  if (!b.timings) throw new Error(JSON.stringify(b).slice(0, 300))
  out.push(b.timings.prompt_per_second)
}
console.log(JSON.stringify(out))
`

export async function promptSpeed(host, url, reps) {
  return await runScript(host, PROMPT, [url, reps])
}

/** The command line of the processes in a namespace whose executable name matches. */
export async function commandLines(namespace, match) {
  const pids = (await execa('ip', ['netns', 'pids', namespace], { reject: false })).stdout.split('\n').filter(Boolean)
  const found = []
  for (const pid of pids) {
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8')
        .split('\0')
        .filter((x) => x !== '')
      if (argv[0] !== undefined && match.test(argv[0])) found.push({ pid: Number(pid), argv })
    } catch {}
  }
  return found
}

/** RSS (bytes) and CPU seconds (user + system) of a process, from /proc. */
export function processUsage(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const rssKiB = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN)
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const ticks = Number(fields[11]) + Number(fields[12])
  return { rss: rssKiB * 1024, cpuSeconds: ticks / 100 }
}

/** Bytes and packets a host sent and received on its LAN interface. */
export async function interfaceCounters(host) {
  const read = async (what) =>
    Number((await execa('ip', ['netns', 'exec', host.name, 'cat', `/sys/class/net/eth0/statistics/${what}`])).stdout)
  return {
    txBytes: await read('tx_bytes'),
    rxBytes: await read('rx_bytes'),
    txPackets: await read('tx_packets'),
    rxPackets: await read('rx_packets')
  }
}

/**
 * A script for runScript: chat completions to `url` every 100 ms until one succeeds (printing when) or the
 * deadline passes (printing null). Each waits up to 10 s: a model that just loaded may take a while.
 */
export const UNTIL_SERVED = `
const [url, deadline] = [process.argv[1], Date.now() + Number(process.argv[2])]
for (;;) {
  try {
    const r = await fetch(url + '/v1/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ messages: [{ role: 'user', content: 'hi' }], max_tokens: 4, temperature: 0 }), signal: AbortSignal.timeout(10000) })
    await r.text()
    if (r.status === 200) { console.log(JSON.stringify({ at: Date.now() })); process.exit(0) }
  } catch {}
  if (Date.now() > deadline) { console.log(JSON.stringify({ at: null })); process.exit(1) }
  await new Promise((r) => setTimeout(r, 100))
}
`
