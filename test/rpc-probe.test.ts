import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execa } from 'execa'
import { canConnect, freePort, LlamaServerSupervisor, probeRpcServer, RpcProbeError, FAST_TEST_TIMINGS } from '@sollol/llama-cpp'
import { llamaBinaries, scratch, startRpcServers, stopAll } from './helpers/llama.js'
import { isAlive, waitFor } from './helpers/wait.js'

test('the probe reads the protocol version and real device memory of an idle rpc-server', async () => {
  const [server] = await startRpcServers(1)
  try {
    const result = await probeRpcServer('127.0.0.1', server!.port)
    assert.deepEqual(result.version, { major: 6, minor: 0, patch: 0 })
    assert.equal(result.legacy, false)
    assert.ok(result.devices.length >= 1)
    for (const device of result.devices) {
      assert.ok(device.total > 100 * 1024 ** 2, `total ${device.total}`)
      assert.ok(device.free > 0 && device.free <= device.total)
    }
  } finally {
    await stopAll([server!])
  }
})

test('a probe of a busy rpc-server times out harmlessly: the server and its client keep working', async () => {
  // The rpc-server is started as a user would run it by hand: SIGPIPE NOT ignored, so a probe that
  // closed its socket while a reply was on its way would kill it (exit 141).
  const files = scratch()
  const { rpcServer, llamaServer } = await llamaBinaries()
  const port = await freePort()
  const raw = execa(rpcServer, ['--port', String(port), '--threads', '1'], {
    reject: false,
    stdin: 'ignore',
    stdout: 'ignore',
    stderr: 'ignore'
  })
  const llama = new LlamaServerSupervisor({
    binary: llamaServer,
    model: files.model('m.gguf'),
    rpc: [`127.0.0.1:${port}`],
    port: await freePort(),
    threads: 1,
    timings: FAST_TEST_TIMINGS
  })
  try {
    await waitFor('the raw rpc-server to listen', async () => await canConnect('127.0.0.1', port))
    await llama.start()
    const started = Date.now()
    await assert.rejects(
      probeRpcServer('127.0.0.1', port, { timeoutMs: 500 }),
      (err: Error) => err instanceof RpcProbeError && err.kind === 'timeout'
    )
    assert.ok(Date.now() - started < 2000)
    // Repeated probes while busy, as a monitoring loop would do.
    for (let i = 0; i < 3; i++) await assert.rejects(probeRpcServer('127.0.0.1', port, { timeoutMs: 200 }))
    assert.ok(await llama.checkLiveness(), 'llama-server still completes through the probed rpc-server')
    await llama.stop()
    // Once the client is gone the probes queued behind it get their late replies and a new probe succeeds.
    const result = await waitFor(
      'a successful probe after llama-server stopped',
      async () => await probeRpcServer('127.0.0.1', port, { timeoutMs: 1000 })
    )
    assert.equal(result.version.major, 6)
    assert.ok(isAlive(raw.pid ?? -1), 'the rpc-server survived (no SIGPIPE from the late replies)')
    assert.equal(raw.exitCode, null)
  } finally {
    await llama.stop()
    raw.kill('SIGTERM')
    await raw
    files.cleanup()
  }
})

test('a probe of a closed port says the server is not running', async () => {
  const port = await freePort()
  await assert.rejects(probeRpcServer('127.0.0.1', port), (err: Error) => err instanceof RpcProbeError && err.kind === 'refused')
})
