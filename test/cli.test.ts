import { test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { execa } from 'execa'
import { readModelInfo } from '@sollol/gguf'
import { canConnect, freePort } from '@sollol/llama-cpp'
import { scratch } from './helpers/llama.js'
import { waitFor } from './helpers/wait.js'

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

test('start runs a supervised rpc-server and takes it down on SIGTERM and on SIGKILL', async () => {
  for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
    const port = await freePort()
    const agent = execa(BIN, ['start', '--no-setup', '--rpc-port', String(port), '--rpc-threads', '1', '--log-level', 'warn'], {
      reject: false,
      cwd: ROOT
    })
    try {
      await waitFor(`the agent's rpc-server on ${port}`, async () => await canConnect('127.0.0.1', port), { timeoutMs: 20_000 })
      agent.kill(signal)
      const result = await agent
      if (signal === 'SIGTERM') assert.equal(result.exitCode, 0, result.stderr)
      await waitFor(`the rpc-server to go with its agent (${signal})`, async () => !(await canConnect('127.0.0.1', port)), {
        timeoutMs: 5000
      })
    } finally {
      agent.kill('SIGKILL')
    }
  }
})

test('start with a port in use says so in one line', async () => {
  const port = await freePort()
  const first = execa(BIN, ['start', '--no-setup', '--rpc-port', String(port), '--rpc-threads', '1', '--log-level', 'warn'], {
    reject: false,
    cwd: ROOT
  })
  try {
    await waitFor('the first agent', async () => await canConnect('127.0.0.1', port), { timeoutMs: 20_000 })
    const second = await run(['start', '--no-setup', '--rpc-port', String(port), '--log-level', 'warn'])
    assert.equal(second.exitCode, 1)
    assert.match(second.stderr, new RegExp(`Port ${port} on 127.0.0.1 is already in use`))
  } finally {
    first.kill('SIGTERM')
    await first
  }
})
