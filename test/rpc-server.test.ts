import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer } from 'node:net'
import { readFileSync } from 'node:fs'
import { execa } from 'execa'
import { FAST_TEST_TIMINGS, freePort, PortInUseError, probeRpcServer, ProcessStartError, RpcServerSupervisor } from '@sollol/llama-cpp'
import { llamaBinaries } from './helpers/llama.js'
import { isAlive, waitFor } from './helpers/wait.js'

const SIGPIPE_MASK = 1n << 12n // signal 13

function ignoredSignals(pid: number): bigint {
  const line =
    readFileSync(`/proc/${pid}/status`, 'utf8')
      .split('\n')
      .find((l) => l.startsWith('SigIgn:')) ?? 'SigIgn: 0'
  return BigInt(`0x${line.split(/\s+/)[1] ?? '0'}`)
}

test('rpc-server starts, is ready when it accepts connections, ignores SIGPIPE and stops cleanly', async () => {
  const { rpcServer } = await llamaBinaries()
  const server = new RpcServerSupervisor({ binary: rpcServer, port: await freePort(), threads: 1, timings: FAST_TEST_TIMINGS })
  await server.start()
  await server.start() // idempotent
  try {
    assert.equal(server.state.kind, 'ready')
    const pid = server.pid ?? -1
    assert.ok(isAlive(pid))
    // The pid is rpc-server itself (the wrappers exec), with SIGPIPE ignored.
    assert.match(readFileSync(`/proc/${pid}/cmdline`, 'utf8'), /rpc-server/)
    assert.equal(ignoredSignals(pid) & SIGPIPE_MASK, SIGPIPE_MASK)
    const probe = await probeRpcServer('127.0.0.1', server.port)
    assert.equal(probe.version.major, 6)
    await server.stop()
    assert.equal(server.state.kind, 'stopped')
    assert.equal(isAlive(pid), false)
    await server.stop() // idempotent
  } finally {
    await server.stop()
  }
})

test('a port already in use is detected before starting anything', async () => {
  const { rpcServer } = await llamaBinaries()
  const blocker = createServer()
  const port = await freePort()
  await new Promise<void>((resolve) => blocker.listen(port, '127.0.0.1', resolve))
  try {
    const server = new RpcServerSupervisor({ binary: rpcServer, port, timings: FAST_TEST_TIMINGS })
    await assert.rejects(server.start(), (err: Error) => err instanceof PortInUseError && err.message.includes(String(port)))
    assert.equal(server.pid, undefined)
    assert.equal(server.state.kind, 'failed')
  } finally {
    blocker.close()
  }
})

test('a start that fails (rpc-server exits, whatever its exit code) is an error with its output', async () => {
  const { rpcServer } = await llamaBinaries()
  const server = new RpcServerSupervisor({
    binary: rpcServer,
    port: await freePort(),
    devices: ['NO_SUCH_DEVICE'],
    timings: FAST_TEST_TIMINGS
  })
  await assert.rejects(server.start(), (err: Error) => err instanceof ProcessStartError && /unknown device/.test(err.message))
})

test('a crashed rpc-server is restarted with backoff and serves again', async () => {
  const { rpcServer } = await llamaBinaries()
  const server = new RpcServerSupervisor({ binary: rpcServer, port: await freePort(), threads: 1, timings: FAST_TEST_TIMINGS })
  const states: string[] = []
  server.on('state', (s) => states.push(s.kind))
  await server.start()
  try {
    const first = server.pid ?? -1
    process.kill(first, 'SIGKILL')
    await waitFor('a restarted rpc-server', () => server.state.kind === 'ready' && server.pid !== first)
    assert.equal(server.restartCount, 1)
    assert.deepEqual(states.slice(-3), ['restarting', 'starting', 'ready'])
    assert.equal((await probeRpcServer('127.0.0.1', server.port)).version.major, 6)
    // A second crash in a row waits longer (backoff).
    const second = server.pid ?? -1
    process.kill(second, 'SIGKILL')
    const restarting = await waitFor('restarting state', () => (server.state.kind === 'restarting' ? server.state : undefined))
    assert.equal(restarting.restartInMs, FAST_TEST_TIMINGS.restartInitialMs * 2)
    await waitFor('ready again', () => server.state.kind === 'ready')
  } finally {
    await server.stop()
  }
})

test('whenReady waits for the restart of a server that just died, before its exit is even seen', async () => {
  const { rpcServer } = await llamaBinaries()
  const server = new RpcServerSupervisor({ binary: rpcServer, port: await freePort(), threads: 1, timings: FAST_TEST_TIMINGS })
  await server.start()
  try {
    assert.equal(await server.whenReady(1000), true)
    const first = server.pid ?? -1
    process.kill(first, 'SIGKILL')
    // dead (a zombie: its socket is closed) but not reaped, so the supervisor still says ready: this is
    // how a device's measurement finds a server that the measurement before it crashed
    const spinUntil = Date.now() + 5000
    while (!['Z', ''].includes(processState(first))) {
      // spin without yielding, so that Node cannot reap it first
      if (Date.now() > spinUntil) assert.fail(`rpc-server ${first} still runs 5 s after SIGKILL`)
    }
    assert.equal(processState(first), 'Z')
    assert.equal(server.state.kind, 'ready')
    assert.equal(await server.whenReady(10_000), true)
    assert.notEqual(server.pid, first)
    assert.equal((await probeRpcServer('127.0.0.1', server.port)).version.major, 6)
    await server.stop()
    assert.equal(await server.whenReady(1000), false)
  } finally {
    await server.stop()
  }
})

/** The state letter of /proc/<pid>/stat (R, S, Z ...), or '' once it is gone. */
function processState(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8')
      .replace(/^.*\) /s, '')
      .charAt(0)
  } catch {
    return ''
  }
}

test('rpc-server dies with its agent, also when the agent is SIGKILLed', async () => {
  const { rpcServer } = await llamaBinaries()
  const port = await freePort()
  const script = `
    import { RpcServerSupervisor, FAST_TEST_TIMINGS } from '@sollol/llama-cpp'
    const s = new RpcServerSupervisor({ binary: ${JSON.stringify(rpcServer)}, port: ${port}, threads: 1, timings: FAST_TEST_TIMINGS })
    await s.start()
    console.log(s.pid)
    setInterval(() => {}, 1000)
  `
  const agent = execa(process.execPath, ['--input-type=module', '-e', script], {
    cwd: new URL('..', import.meta.url).pathname,
    reject: false,
    buffer: false
  })
  const pid = await new Promise<number>((resolve, reject) => {
    agent.stdout?.once('data', (chunk: Buffer) => resolve(Number(String(chunk).trim())))
    agent.once('exit', () => reject(new Error('agent exited early')))
  })
  assert.ok(isAlive(pid))
  agent.kill('SIGKILL')
  await agent
  await waitFor('rpc-server to die with its agent', () => !isAlive(pid), { timeoutMs: 5000 })
})
