import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'
import { readModelInfo } from '@sollol/gguf'
import { scratch } from './helpers/llama.js'
import { waitFor } from './helpers/wait.js'
import { TestNetwork } from './helpers/netns.js'
import { CLI, TestAgent } from './helpers/agents.js'

// The bin link npm created at the root: what `npx sollol-agent` runs.
const ROOT = new URL('../..', import.meta.url).pathname
const BIN = join(ROOT, 'node_modules', '.bin', 'sollol-agent')
const run = (args: string[]) => execa(BIN, args, { reject: false, cwd: ROOT, env: { NO_COLOR: '1' } })

test('--help lists the commands and exits 0', async () => {
  const result = await run(['--help'])
  assert.equal(result.exitCode, 0)
  for (const command of ['start', 'setup', 'test-model', 'model-info', 'probe']) assert.match(result.stdout, new RegExp(`\\b${command}\\b`))
})

test('test-model writes a loadable model; bad input is one line and exit code 2', async () => {
  const files = scratch()
  try {
    const out = join(files.dir, 'm.gguf')
    const ok = await run(['test-model', '--out', out, '--layers', '4'])
    assert.equal(ok.exitCode, 0, ok.stderr)
    assert.equal((await readModelInfo(out)).layerCount, 4)
    for (const bad of [
      ['--layers', 'many'],
      ['--type', 'q4'],
      ['--embd', '30']
    ]) {
      const result = await run(['test-model', '--out', join(files.dir, 'x.gguf'), ...bad])
      assert.equal(result.exitCode, 2, `${bad.join(' ')}: ${result.stderr}`)
      assert.match(result.stderr, /Expected --\w+ to be/)
      assert.doesNotMatch(result.stderr, /\n\s+at /, 'no stack trace')
    }
    assert.equal(existsSync(join(files.dir, 'x.gguf')), false, 'nothing written on bad input')
    const info = await run(['model-info', join(ROOT, 'package.json')])
    assert.equal(info.exitCode, 2)
    assert.match(info.stderr, /Expected `.*package.json` to be a GGUF model file/)
  } finally {
    files.cleanup()
  }
})

test('setup finds the binaries without building and prints paths and version', async () => {
  const result = await run(['setup', '--json'])
  assert.equal(result.exitCode, 0, result.stderr)
  const found = JSON.parse(result.stdout) as { rpcServer: string; llamaServer: string; version: string }
  assert.ok(existsSync(found.rpcServer) && existsSync(found.llamaServer))
  assert.match(found.version, /\d/)
})

function pidsIn(namespace: string): number[] {
  return execFileSync('ip', ['netns', 'pids', namespace], { encoding: 'utf8' })
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map(Number)
}

// Agents started by tests run inside a test host's network namespace: nothing they multicast leaves the machine.
test('start runs the agent with its rpc-server and takes everything down on SIGTERM and on SIGKILL', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sollol-cli-'))
  const network = TestNetwork.create([{}])
  try {
    for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
      const agent = new TestAgent(network.hosts[0]!, dir, ['--rpc-threads', '1'])
      agent.start()
      // The API answers at once; the rpc-server is `starting` until it is probed and measured.
      const view = await waitFor(
        'the agent with its rpc-server ready',
        () => (agent.view()?.nodes[0]?.rpc.state === 'ready' ? agent.view() : undefined),
        {
          timeoutMs: 20_000
        }
      )
      assert.equal(view.nodes[0]?.rpc.state, 'ready')
      await agent.stopWatching()
      assert.equal(pidsIn(network.hosts[0]!.name).length, 2, 'the agent and its rpc-server')
      agent.signal(signal)
      await agent.exited()
      await waitFor(`nothing left running after ${signal}`, () => pidsIn(network.hosts[0]!.name).length === 0, { timeoutMs: 5000 })
      if (signal === 'SIGTERM') assert.match(agent.log(), /"msg":"stopping"/)
      // The speed is measured at the first start into a fresh data dir, and kept for the next starts.
      assert.equal(agent.log().match(/rpc-server speed measured/g)?.length, 1, 'measured once over two starts')
    }
  } finally {
    network.destroy()
    rmSync(dir, { recursive: true, force: true })
  }
})

test('start with a port in use, or a bad option value, says so in one line', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sollol-cli-'))
  const network = TestNetwork.create([{}])
  const host = network.hosts[0]!
  const first = new TestAgent(host, dir, ['--rpc-threads', '1'])
  try {
    first.start()
    await waitFor('the first agent', () => first.view(), { timeoutMs: 20_000 })
    const second = await host.run(process.execPath, [
      CLI,
      'start',
      '--no-setup',
      '--data-dir',
      join(dir, 'second'),
      '--p2p-port',
      '7590',
      '--api-port',
      '7591'
    ])
    assert.equal(second.exitCode, 1)
    assert.match(String(second.stderr), /Port 50052 on 127\.0\.0\.1 is already in use/)
    for (const [args, pattern] of [
      [['--max-memory', 'lots'], /Expected --max-memory to be a size like 512M or 8G, got `lots`/],
      [['--cluster', 'Bad Name'], /Expected --cluster to be 1-32 lower-case letters/],
      [['--bootstrap', '10.0.0.1:7490'], /Expected --bootstrap to be a multiaddr/],
      [['--rpc-port', '0'], /Expected --rpc-port to be an integer 1-65535, got `0`/]
    ] as const) {
      // inside the test host too: should parsing wrongly succeed, the agent still stays off the real LAN
      const result = await host.run(process.execPath, [CLI, 'start', '--no-setup', ...args])
      assert.equal(result.exitCode, 2, `${args.join(' ')}: ${String(result.stderr)}`)
      assert.match(String(result.stderr), pattern)
      assert.doesNotMatch(String(result.stderr), /\n\s+at /, 'no stack trace')
    }
    const env = await host.run(process.execPath, [CLI, 'start', '--no-setup'], { env: { SOLLOL_RPC_PORT: 'abc' } })
    assert.equal(env.exitCode, 2)
    assert.match(String(env.stderr), /Expected --rpc-port to be an integer 1-65535, got `abc`/)
  } finally {
    await first.stop()
    network.destroy()
    rmSync(dir, { recursive: true, force: true })
  }
})

test('bad files: a missing or corrupt model leaves a worker that says why; a binary that is not llama.cpp is one line', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sollol-cli-'))
  const network = TestNetwork.create([{}, {}])
  const corrupt = join(dir, 'corrupt.gguf')
  writeFileSync(corrupt, 'GGUF but not really')
  const missing = new TestAgent(network.hosts[0]!, dir, ['--rpc-threads', '1', '--model', join(dir, 'missing.gguf')])
  const broken = new TestAgent(network.hosts[1]!, dir, ['--rpc-threads', '1', '--model', corrupt])
  try {
    missing.start()
    broken.start()
    const views = await waitFor(
      'both agents serving as workers',
      () => {
        const v = [missing.view(), broken.view()]
        const ready = (x: (typeof v)[number]): boolean => x?.nodes.find((n) => n.peerId === x.self)?.rpc.state === 'ready'
        return v.every((x) => x !== undefined && x.nodes.length === 2 && ready(x)) ? v : undefined
      },
      { timeoutMs: 30_000 }
    )
    assert.match(
      views[0]!.problem ?? '',
      /Expected --model to name a GGUF file, got `.*missing\.gguf` \(no such file\); serving as a worker only/
    )
    assert.match(views[1]!.problem ?? '', /corrupt\.gguf` to be a GGUF model file.*serving as a worker only/)
    for (const v of views) {
      const self = v!.nodes.find((n) => n.peerId === v!.self)!
      assert.equal(self.rpc.state, 'ready')
      assert.equal(self.canCoordinate, false)
    }
    const status = await network.hosts[0]!.run(process.execPath, [CLI, 'status'])
    assert.match(String(status.stdout), /not serving: Expected --model/)
    // --watch --json: one JSON line per refresh until Ctrl-C (SIGINT), then exit 0
    const watch = network.hosts[0]!.run(process.execPath, [CLI, 'status', '--watch', '1', '--json'], { buffer: true })
    let lines = 0
    watch.stdout?.on('data', (chunk: Buffer) => {
      lines += String(chunk).split('\n').length - 1
    })
    await waitFor('two refreshes of status --watch', () => lines >= 2, { timeoutMs: 10_000 })
    watch.kill('SIGINT')
    const watched = await watch
    assert.equal(watched.exitCode, 0, String(watched.stderr))
    const refreshes = String(watched.stdout).trim().split('\n')
    assert.ok(refreshes.length >= 2)
    for (const line of refreshes) assert.equal((JSON.parse(line) as { nodes: unknown[] }).nodes.length, 2)
    const notLlama = await network.hosts[0]!.run(process.execPath, [
      CLI,
      'start',
      '--data-dir',
      join(dir, 'x'),
      '--p2p-port',
      '7590',
      '--api-port',
      '7591',
      '--rpc-port',
      '50060',
      '--rpc-server-bin',
      '/bin/true',
      '--llama-server-bin',
      '/bin/true'
    ])
    assert.equal(notLlama.exitCode, 1)
    assert.match(String(notLlama.stderr), /rpc-server exited during start/)
    assert.doesNotMatch(String(notLlama.stderr), /\n\s+at /)
  } finally {
    await Promise.all([missing.stop(), broken.stop()])
    network.destroy()
    rmSync(dir, { recursive: true, force: true })
  }
})
