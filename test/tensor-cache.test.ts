/**
 * The rpc-server's tensor cache with real llama.cpp: a counting relay between llama-server and an
 * rpc-server measures the weight bytes each load sends.
 * - cold cache: every weight byte crosses; the server writes its cache;
 * - the same load again (a failover, a re-plan): < 1 % of the model's bytes cross;
 * - a cache seeded by us from the model file (our hash and file naming): the first load sends < 1 %.
 * The completions of all three agree: the cached bytes are the model's.
 */
import { after, test } from 'node:test'
import assert from 'node:assert/strict'
import { connect, createServer, type Server } from 'node:net'
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DEFAULT_TEST_MODEL, readGgufHeader, tensorByteSizes, writeTestModel } from '@sollol/gguf'
import {
  cacheableTensors,
  FAST_TEST_TIMINGS,
  freePort,
  LlamaServerSupervisor,
  RpcLoadMeter,
  rpcCacheDir,
  RpcServerSupervisor,
  seedRpcCache,
  tensorsFromCache
} from '@sollol/llama-cpp'
import { llamaBinaries } from './helpers/llama.js'

const dir = mkdtempSync(join(tmpdir(), 'sollol-tensor-cache-'))
after(() => rmSync(dir, { recursive: true, force: true }))

// 4 layers of 134 MB (f32, hidden size 1664): every layer tensor is above llama.cpp's 10 MiB hash threshold;
// only the norms and the 3 MB output head (0.55 %) are below it and sent every time.
const model = join(dir, 'model.gguf')
writeTestModel(model, { ...DEFAULT_TEST_MODEL, layers: 4, embd: 1664, ff: 4480, heads: 8, weightStd: 0.05 })
const modelBytes = statSync(model).size

/** A TCP relay to the rpc-server that meters what llama-server sends, like the agent's gate. */
async function meteredRelay(targetPort: number): Promise<{ port: number; meters: RpcLoadMeter[]; server: Server }> {
  const meters: RpcLoadMeter[] = []
  const server = createServer((client) => {
    const meter = new RpcLoadMeter()
    meters.push(meter)
    const upstream = connect({ host: '127.0.0.1', port: targetPort })
    client.on('data', (chunk: Buffer) => meter.feed(chunk))
    client.pipe(upstream)
    upstream.pipe(client)
    client.on('close', () => upstream.destroy())
    upstream.on('close', () => client.destroy())
    client.on('error', () => upstream.destroy())
    upstream.on('error', () => client.destroy())
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  return { port: typeof address === 'object' && address !== null ? address.port : 0, meters, server }
}

/** One load of the model onto the rpc-server (all layers there) and one completion; the bytes it sent. */
async function loadOnce(rpcPort: number): Promise<{ weightBytes: number; fromCache: number; text: string }> {
  const { llamaServer } = await llamaBinaries()
  const relay = await meteredRelay(rpcPort)
  const server = new LlamaServerSupervisor({
    binary: llamaServer,
    model,
    rpc: [`127.0.0.1:${relay.port}`],
    port: await freePort(),
    threads: 1,
    contextSize: 256,
    parallel: 1,
    timings: { ...FAST_TEST_TIMINGS, readyTimeoutMs: 300_000 }
  })
  try {
    await server.start()
    const response = await fetch(`${server.url}/completion`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'the cat', n_predict: 8, temperature: 0, cache_prompt: false }),
      signal: AbortSignal.timeout(60_000)
    })
    assert.equal(response.status, 200)
    const text = ((await response.json()) as { content: string }).content
    const weightBytes = relay.meters.reduce((sum, m) => sum + m.count.weightBytes, 0)
    const fromCache = relay.meters.reduce((sum, m) => sum + tensorsFromCache(m.count), 0)
    return { weightBytes, fromCache, text }
  } finally {
    await server.stop()
    relay.server.close()
  }
}

async function rpcServerWithCache(llamaCacheRoot: string): Promise<RpcServerSupervisor> {
  const { rpcServer } = await llamaBinaries()
  const rpc = new RpcServerSupervisor({
    binary: rpcServer,
    port: await freePort(),
    threads: 1,
    cache: true,
    env: { LLAMA_CACHE: llamaCacheRoot },
    timings: FAST_TEST_TIMINGS
  })
  await rpc.start()
  return rpc
}

test('a second load of the same model sends < 1 % of its bytes; a cache seeded from the file does from the first load', async () => {
  const header = await readGgufHeader(model)
  const ranges = cacheableTensors(header.tensors, tensorByteSizes(header), header.tensorDataOffset)
  assert.equal(ranges.length, 4 * 7, 'every layer matrix is above the hash threshold')

  // Cold, then warm: the rpc-server keeps running between the two loads, as a fenced one does.
  const coldRoot = join(dir, 'cold')
  const rpc = await rpcServerWithCache(coldRoot)
  let cold, warm
  try {
    cold = await loadOnce(rpc.port)
    warm = await loadOnce(rpc.port)
  } finally {
    await rpc.stop()
  }
  assert.equal(readdirSync(rpcCacheDir(coldRoot)).length, ranges.length, 'the server cached every big tensor')
  assert.ok(cold.weightBytes >= modelBytes * 0.98, `cold load sent ${cold.weightBytes} of ${modelBytes} bytes`)
  assert.equal(cold.fromCache, 0)
  assert.ok(warm.weightBytes < modelBytes * 0.01, `warm load sent ${warm.weightBytes} of ${modelBytes} bytes`)
  assert.equal(warm.fromCache, ranges.length)

  // Seeded: our files, named by our hash, before the rpc-server ever saw the model.
  const seededRoot = join(dir, 'seeded')
  const started = Date.now()
  const seed = await seedRpcCache({ modelPath: model, modelId: 'test', ranges, cacheDir: rpcCacheDir(seededRoot), maxBytes: 2 ** 40 })
  const seedMs = Date.now() - started
  assert.equal(seed.written, ranges.length)
  const seededRpc = await rpcServerWithCache(seededRoot)
  let seeded
  try {
    seeded = await loadOnce(seededRpc.port)
  } finally {
    await seededRpc.stop()
  }
  assert.ok(seeded.weightBytes < modelBytes * 0.01, `seeded load sent ${seeded.weightBytes} of ${modelBytes} bytes`)
  assert.equal(seeded.fromCache, ranges.length)
  assert.deepEqual(
    readdirSync(rpcCacheDir(seededRoot))
      .filter((n) => /^[0-9a-f]{16}$/.test(n))
      .sort(),
    readdirSync(rpcCacheDir(coldRoot)).sort(),
    'our file names are the ones llama.cpp chose'
  )

  assert.equal(warm.text, cold.text, 'the warm load computes as the cold one')
  assert.equal(seeded.text, cold.text, 'the seeded load computes as the cold one')
  const pct = (n: number): string => ((100 * n) / modelBytes).toFixed(2)
  console.log(
    `tensor cache, ${(modelBytes / 1e6).toFixed(0)} MB model: cold load sent ${pct(cold.weightBytes)} %, warm ${pct(warm.weightBytes)} %, ` +
      `seeded ${pct(seeded.weightBytes)} % (seeding took ${seedMs} ms)`
  )
})
