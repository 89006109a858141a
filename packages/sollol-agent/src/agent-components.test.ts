import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DEFAULT_TEST_MODEL, writeTestModel } from '@sollol/gguf'
import { listCache, type Logger } from '@sollol/llama-cpp'
import type { CoordinationPart } from '@sollol/core'
import { OpenAiUpstream } from './openai-upstream.js'
import { StaticBackendProbe } from './static-backend-probe.js'
import { TensorCacheKeeper } from './tensor-cache-keeper.js'

const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {}, child: () => quiet } as unknown as Logger

const serving = (coordinator: string, state = 'ready'): CoordinationPart =>
  ({
    coordinator: { peerId: coordinator },
    plan: { server: { state, detail: null } },
    problem: null
  }) as unknown as CoordinationPart

test('the OpenAI upstream: why not, this machine, or one tunnel to the coordinator, replaced when it changes', async () => {
  const opened: string[] = []
  const closed: string[] = []
  let port = 40000
  const mesh = {
    peerId: 'self',
    openTunnel: async (peerId: string) => {
      opened.push(peerId)
      const entry = port++
      return { port: entry, close: async () => void closed.push(`${peerId}:${entry}`) }
    }
  }
  let view: CoordinationPart | undefined
  const upstream = new OpenAiUpstream({ mesh, coordination: () => view, serverPort: 8080 })
  assert.deepEqual(await upstream.resolve(), { unavailable: 'no coordinator elected yet' })
  view = { coordinator: { peerId: 'a' }, plan: null, problem: 'the model does not fit' } as unknown as CoordinationPart
  assert.deepEqual(await upstream.resolve(), { unavailable: 'the model does not fit' })
  view = serving('a', 'loading')
  assert.deepEqual(await upstream.resolve(), { unavailable: 'the llama-server is loading' })
  view = serving('self')
  assert.deepEqual(await upstream.resolve(), { host: '127.0.0.1', port: 8080 })
  view = serving('a')
  assert.deepEqual(await upstream.resolve(), { host: '127.0.0.1', port: 40000 })
  assert.deepEqual(await upstream.resolve(), { host: '127.0.0.1', port: 40000 }, 'the tunnel is kept')
  view = serving('b')
  assert.deepEqual(await upstream.resolve(), { host: '127.0.0.1', port: 40001 })
  assert.deepEqual(opened, ['a', 'b'])
  assert.deepEqual(closed, ['a:40000'], 'the tunnel to the old coordinator is closed')
  await upstream.close()
  assert.deepEqual(closed, ['a:40000', 'b:40001'])
})

test('the tensor cache keeper seeds from the model file, says so, and a restart finds it seeded', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sollol-cache-keeper-'))
  try {
    const modelPath = join(dir, 'model.gguf')
    // one layer whose three feed-forward tensors (11.5 MB each) are above llama.cpp's 10 MiB hash threshold
    writeTestModel(modelPath, { ...DEFAULT_TEST_MODEL, layers: 1, embd: 1024, ff: 2816, heads: 8 })
    let changes = 0
    const options = {
      dir: join(dir, 'cache'),
      dataDir: dir,
      modelPath,
      modelId: 'test-model',
      logger: quiet,
      onChange: () => void changes++
    }
    const keeper = new TensorCacheKeeper(options)
    const before = keeper.view
    assert.equal(before, null, 'nothing said before start')
    await keeper.start()
    keeper.stop()
    const files = await listCache(options.dir)
    assert.equal(files.length, 3, 'the tensors above the threshold were written to the cache')
    const bytes = files.reduce((sum, f) => sum + f.bytes, 0)
    assert.equal(keeper.view?.seeding, 'done')
    assert.equal(keeper.view?.bytes, bytes)
    assert.ok((keeper.view?.maxBytes ?? 0) > 0, 'a cap from the free disk space')
    assert.equal(changes, 1)
    const again = new TensorCacheKeeper({ ...options, maxBytes: 2 ** 30 })
    await again.start()
    again.stop()
    assert.equal(again.view?.bytes, bytes, 'nothing written twice')
    assert.equal(again.view?.maxBytes, 2 ** 30)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('a bare rpc-server that refuses connections is announced unreachable, without a measurement', async () => {
  // a port that was just free: nothing listens there
  const port = await new Promise<number>((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
  })
  let measured = 0
  let changed = 0
  const probe = new StaticBackendProbe({
    backends: [{ host: '127.0.0.1', port }],
    calibrate: async () => {
      measured++
      throw new Error('not reached')
    },
    logger: quiet,
    onChange: () => void changed++
  })
  assert.deepEqual(probe.list(), [])
  await probe.probe()
  assert.equal(changed, 1)
  assert.equal(measured, 0)
  await probe.probe()
  assert.equal(changed, 1, 'no change, nothing announced')
  assert.deepEqual(
    probe.list().map((b) => [b.host, b.port, b.state, b.speed]),
    [['127.0.0.1', port, 'unreachable', null]]
  )
})
