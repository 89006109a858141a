import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'
import { freePort, type LlamaBinaries, type Logger } from '@sollol/llama-cpp'
import { binariesForTests } from './llama-for-tests.js'
import { LocalRpc } from './local-rpc.js'

const logger: Logger = { debug() {}, info() {}, warn() {}, error() {}, child: () => logger } as unknown as Logger

const dir = mkdtempSync(join(tmpdir(), 'sollol-local-rpc-'))
let binaries: LlamaBinaries | undefined
let missing: string | undefined
before(async () => {
  ;({ binaries, missing } = await binariesForTests())
})
after(() => rmSync(dir, { recursive: true, force: true }))

test('an rpc-server that dies right after its start is probed again once its supervisor restarted it; the agent measures it', async (t) => {
  if (binaries === undefined) return t.skip(`llama.cpp is not set up: ${missing}`)
  const port = await freePort()
  const rpc = new LocalRpc({
    binaries,
    bind: '127.0.0.1',
    port,
    threads: 1,
    cache: false,
    llamaCacheRoot: join(dir, 'llama-cache'),
    dataDir: dir,
    memoryBudget: 2 ** 30,
    givenSpeed: 10,
    recalibrate: false,
    logger,
    onChange: () => {}
  })
  try {
    await rpc.launch()
    // The server goes away before the first probe, as one did in a 20-agent probe (it exited with code 0
    // a quarter second after its readiness check); the supervisor restarts it after 500 ms.
    const { stdout } = await execa('pgrep', ['-f', `ggml-rpc-server.* ${port}( |$)`], { reject: false })
    const pids = stdout.split('\n').filter((line) => line !== '')
    assert.equal(pids.length, 1, `one rpc-server on port ${port}: ${stdout}`)
    process.kill(Number(pids[0]), 'SIGKILL')
    const deadline = Date.now() + 10_000
    while (rpc.restartCount === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5))
    assert.equal(rpc.restartCount, 1, 'the supervisor saw the exit')
    // Before the fix the probe was refused here and the agent's start failed ("connection refused (not running?)").
    await rpc.measure()
    assert.equal(rpc.state, 'ready')
    assert.ok(rpc.protocol !== null, 'the restarted server answered its hello')
    assert.ok(rpc.devices.length > 0, 'its devices are listed')
  } finally {
    await rpc.stop()
  }
})
