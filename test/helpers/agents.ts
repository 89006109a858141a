/**
 * Real `sollol-agent` processes on test hosts, started through the real CLI, and a light watcher per
 * host that reads the agent's local API (a tiny script, so polling does not cost a libp2p start-up).
 */
import { createWriteStream, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { ResultPromise } from 'execa'
import type { ClusterView } from '@sollol/core'
import type { TestHost } from './netns.js'

export const ROOT = new URL('../../..', import.meta.url).pathname
export const CLI = join(ROOT, 'packages', 'sollol-agent', 'bin', 'sollol-agent.js')

const COMPLETER = `
const [url, timeoutMs, token] = [process.argv[2], Number(process.argv[3] ?? 10000), process.argv[4]]
try {
  const r = await fetch(url + '/v1/chat/completions', {
    method: 'POST', headers: { 'content-type': 'application/json', ...(token ? { authorization: 'Bearer ' + token } : {}) },
    body: JSON.stringify({ messages: [{ role: 'user', content: 'hello' }], max_tokens: 8, temperature: 0 }),
    signal: AbortSignal.timeout(timeoutMs)
  })
  const body = await r.json()
  process.stdout.write(JSON.stringify({ status: r.status, body }))
  process.exit(r.status === 200 ? 0 : 1)
} catch (err) { process.stdout.write(JSON.stringify({ error: String(err) })); process.exit(1) }
`

/** One chat completion against `url`, sent from inside `host` (the server is on the test network). */
export async function completeFrom(
  host: TestHost,
  dir: string,
  url: string,
  timeoutMs = 10_000,
  token?: string
): Promise<{ ok: boolean; output: string }> {
  const script = join(dir, 'complete.mjs')
  writeFileSync(script, COMPLETER)
  const result = await host.run(process.execPath, [script, url, String(timeoutMs), ...(token !== undefined ? [token] : [])])
  return { ok: result.exitCode === 0, output: String(result.stdout) }
}

const WATCHER = `
const url = process.argv[2]
let last = ''
for (;;) {
  try {
    const r = await fetch(url, { signal: AbortSignal.timeout(1000) })
    const text = JSON.stringify(await r.json())
    if (text !== last) { last = text; process.stdout.write(text + '\\n') }
  } catch {}
  await new Promise((resolve) => setTimeout(resolve, 100))
}
`

export class TestAgent {
  private process: ResultPromise | undefined
  private watcher: ResultPromise | undefined
  private latest: ClusterView | undefined
  readonly logFile: string
  startedAt = 0

  constructor(
    readonly host: TestHost,
    private readonly dir: string,
    private readonly args: readonly string[] = [],
    /** false: no watcher process (many agents on one machine: the test observes them its own way). */
    private readonly watch = true,
    /** The CLI to run: this checkout's, or an earlier release's (helpers/release.ts). */
    private readonly cli = CLI
  ) {
    this.logFile = join(dir, `${host.name}.log`)
  }

  get dataDir(): string {
    return join(this.dir, `${this.host.name}-data`)
  }

  get pid(): number | undefined {
    return this.process?.pid
  }

  /**
   * Starts the agent (through the CLI) and its watcher; `nodeOptions` go to node itself (e.g. --import),
   * `env` to the agent and its children (e.g. GGML_VK_VISIBLE_DEVICES for a software Vulkan device).
   */
  start(nodeOptions: readonly string[] = [], env: NodeJS.ProcessEnv = {}): void {
    this.startedAt = Date.now()
    const log = createWriteStream(this.logFile, { flags: 'a' })
    this.process = this.host.run(
      process.execPath,
      [...nodeOptions, this.cli, 'start', '--data-dir', this.dataDir, '--no-setup', '--log-level', 'debug', ...this.args],
      { buffer: false, stdin: 'ignore', env }
    )
    this.process.stdout?.pipe(log)
    this.process.stderr?.pipe(log)
    if (this.watch && this.watcher === undefined) {
      const script = join(this.dir, 'watcher.mjs')
      writeFileSync(script, WATCHER)
      const apiPort = this.args.includes('--api-port') ? this.args[this.args.indexOf('--api-port') + 1] : '7491'
      this.watcher = this.host.run(process.execPath, [script, `http://127.0.0.1:${apiPort}/v1/cluster`], { buffer: false, stdin: 'ignore' })
      let partial = ''
      this.watcher.stdout?.setEncoding('utf8')
      this.watcher.stdout?.on('data', (chunk: string) => {
        const lines = (partial + chunk).split('\n')
        partial = lines.pop() ?? ''
        for (const line of lines) {
          try {
            this.latest = JSON.parse(line) as ClusterView
          } catch {}
        }
      })
    }
  }

  /** The agent's latest view as its watcher last read it (undefined while it does not answer). */
  view(): ClusterView | undefined {
    return this.latest
  }

  /** Peer ids in the latest view, self included. */
  peers(): string[] {
    return this.latest?.nodes.map((n) => n.peerId) ?? []
  }

  /** null while the agent runs; its exit code (or signal number as a negative) once it has exited. */
  exitCode(): number | null {
    const p = this.process
    if (p === undefined) return null
    return p.exitCode ?? (p.signalCode !== null ? -1 : null)
  }

  signal(signal: NodeJS.Signals): void {
    this.process?.kill(signal)
    if (signal === 'SIGKILL' || signal === 'SIGTERM') this.latest = undefined
  }

  async exited(): Promise<void> {
    await this.process
  }

  /** `sollol-agent status --json` run inside the host, as a user would. */
  async statusJson(extra: readonly string[] = []): Promise<ClusterView> {
    const result = await this.host.run(process.execPath, [CLI, 'status', '--json', ...extra])
    if (result.exitCode !== 0) throw new Error(`status failed on ${this.host.name}: ${String(result.stderr)}`)
    return JSON.parse(String(result.stdout)) as ClusterView
  }

  /** Stops the watcher only (so the namespace holds just the agent and its children). */
  async stopWatching(): Promise<void> {
    const watcher = this.watcher
    this.watcher = undefined
    watcher?.kill('SIGKILL')
    await watcher
  }

  log(): string {
    try {
      return readFileSync(this.logFile, 'utf8')
    } catch {
      return ''
    }
  }

  async stop(): Promise<void> {
    this.watcher?.kill('SIGKILL')
    this.watcher = undefined
    this.latest = undefined // a view from before the stop must not pass for one after a restart
    if (this.process !== undefined && this.process.exitCode === null) {
      this.process.kill('SIGTERM')
      const timer = setTimeout(() => this.process?.kill('SIGKILL'), 5000)
      await this.process
      clearTimeout(timer)
    }
  }
}
