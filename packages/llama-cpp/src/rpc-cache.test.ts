import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, utimesSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { cacheableTensors, evictionOrder, fnvHex, fnvInit, fnvUpdate, listCache, seedRpcCache, trimRpcCache } from './rpc-cache.js'
import { RPC_HASH_THRESHOLD } from './rpc-load-meter.js'

const fnv = (...parts: string[]): string => {
  const state = fnvInit()
  for (const part of parts) fnvUpdate(state, Buffer.from(part))
  return fnvHex(state)
}

test('FNV-1a 64 gives the published values, whatever the chunking', () => {
  assert.equal(fnv(''), 'cbf29ce484222325')
  assert.equal(fnv('a'), 'af63dc4c8601ec8c')
  assert.equal(fnv('foobar'), '85944171f73967e8')
  assert.equal(fnv('foo', 'b', 'ar'), '85944171f73967e8')
})

test('cacheable tensors: every one above the hash threshold, at its absolute offset', () => {
  const big = RPC_HASH_THRESHOLD + 1
  const tensors = [
    { name: 'token_embd.weight', offset: 0 },
    { name: 'blk.0.attn_q.weight', offset: big },
    { name: 'blk.0.attn_norm.weight', offset: 2 * big }
  ]
  const sizes = new Map([
    ['token_embd.weight', big],
    ['blk.0.attn_q.weight', big],
    ['blk.0.attn_norm.weight', 64]
  ])
  assert.deepEqual(
    cacheableTensors(tensors, sizes, 1000).map((t) => [t.name, t.start, t.bytes]),
    [
      ['token_embd.weight', 1000, big],
      ['blk.0.attn_q.weight', 1000 + big, big]
    ]
  )
})

test('eviction drops least recently used files until the rest fits', () => {
  const files = [
    { name: 'a', bytes: 10, usedAt: 3 },
    { name: 'b', bytes: 10, usedAt: 1 },
    { name: 'c', bytes: 10, usedAt: 2 }
  ]
  assert.deepEqual(evictionOrder(files, 30), [])
  assert.deepEqual(
    evictionOrder(files, 15).map((f) => f.name),
    ['b', 'c']
  )
  assert.deepEqual(
    evictionOrder(files, 0).map((f) => f.name),
    ['b', 'c', 'a']
  )
})

test('seeding writes one file per range, named by the hash of its bytes, within the cap; a second run finds them', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sollol-seed-'))
  try {
    const model = join(dir, 'model.bin')
    const bytes = Buffer.alloc(3 * 1024 * 1024 + 100)
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7919) & 0xff
    writeFileSync(model, bytes)
    const ranges = [
      { name: 'x', start: 100, bytes: 2 * 1024 * 1024 + 3 },
      { name: 'y', start: 100 + 2 * 1024 * 1024 + 3, bytes: 5 }
    ]
    const cacheDir = join(dir, 'rpc')
    const first = await seedRpcCache({ modelPath: model, modelId: 'm1', ranges, cacheDir, maxBytes: 1 << 30 })
    assert.deepEqual(first, { written: 2, present: 0, bytes: ranges[0]!.bytes + 5, skipped: 0 })
    for (const range of ranges) {
      const content = bytes.subarray(range.start, range.start + range.bytes)
      const state = fnvInit()
      fnvUpdate(state, content)
      assert.deepEqual(readFileSync(join(cacheDir, fnvHex(state))), content, `cache file of ${range.name}`)
    }
    const again = await seedRpcCache({ modelPath: model, modelId: 'm1', ranges, cacheDir, maxBytes: 1 << 30 })
    assert.deepEqual(again, { written: 0, present: 2, bytes: 0, skipped: 0 })
    assert.ok(!readdirSync(cacheDir).some((n) => n.startsWith('.seed-')), 'no temporary file left')

    // a split model: each range read from its own shard
    const shard = join(dir, 'shard-2.bin')
    writeFileSync(shard, bytes.subarray(0, 4096))
    const sharded = await seedRpcCache({
      modelPath: model,
      modelId: 'm3',
      ranges: [{ name: 'z', path: shard, start: 10, bytes: 100 }],
      cacheDir: join(dir, 'sharded'),
      maxBytes: 1 << 30
    })
    assert.equal(sharded.written, 1)
    const zState = fnvInit()
    fnvUpdate(zState, bytes.subarray(10, 110))
    assert.deepEqual(readFileSync(join(dir, 'sharded', fnvHex(zState))), bytes.subarray(10, 110))

    const capped = await seedRpcCache({ modelPath: model, modelId: 'm2', ranges, cacheDir: join(dir, 'small'), maxBytes: 1000 })
    assert.deepEqual(capped, { written: 1, present: 0, bytes: 5, skipped: 1 })

    // Trimming keeps the most recently used file.
    const [older] = (await listCache(cacheDir)).sort((a, b) => b.bytes - a.bytes)
    utimesSync(join(cacheDir, older!.name), new Date(1000), new Date(1000))
    assert.equal(await trimRpcCache(cacheDir, 100), older!.bytes)
    assert.equal((await listCache(cacheDir)).length, 1)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})
