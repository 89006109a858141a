import { test } from 'node:test'
import assert from 'node:assert/strict'
import { encodeHello, encodeRequest } from './rpc-protocol.js'
import { RPC_HASH_THRESHOLD, RPC_TENSOR_BYTES, RpcLoadMeter, RpcRequest, tensorsFromCache, type RpcLoadDelta } from './rpc-load-meter.js'

const setTensor = (dataBytes: number): Buffer => encodeRequest(RpcRequest.SET_TENSOR, new Uint8Array(RPC_TENSOR_BYTES + 8 + dataBytes))
function hashOffer(hash: bigint): Buffer {
  const payload = Buffer.alloc(RPC_TENSOR_BYTES + 16)
  payload.writeBigUInt64LE(hash, RPC_TENSOR_BYTES + 8)
  return encodeRequest(RpcRequest.SET_TENSOR_HASH, payload)
}
const compute = (): Buffer => encodeRequest(RpcRequest.GRAPH_COMPUTE, new Uint8Array(40))

/** Feeds `stream` in pieces of the given sizes, over and over: framing must not depend on chunk borders. */
function feedInPieces(meter: RpcLoadMeter, stream: Buffer, sizes: readonly number[]): RpcLoadDelta[] {
  const deltas: RpcLoadDelta[] = []
  for (let at = 0, i = 0; at < stream.length; i++) {
    const size = sizes[i % sizes.length]!
    meter.feed(stream.subarray(at, at + size), (d) => deltas.push(d))
    at += size
  }
  return deltas
}

test('counts the tensor data of a load, offers by hash, and stops at the first graph compute', () => {
  const big = RPC_HASH_THRESHOLD + 1
  const stream = Buffer.concat([
    encodeHello(),
    hashOffer(0xaf63dc4c8601ec8cn), // taken from the cache: not followed by its bytes
    hashOffer(0x0123n),
    setTensor(big), // the second offer missed: its bytes follow
    setTensor(1000), // small tensors are sent without an offer
    compute(),
    setTensor(5000) // activations after the load: not weights
  ])
  for (const pieces of [[stream.length], [1], [9, 1, 300], [4096, 7]]) {
    const meter = new RpcLoadMeter()
    const deltas = feedInPieces(meter, stream, pieces)
    assert.deepEqual(
      meter.count,
      { weightBytes: big + 1000, tensorsSent: 1, tensorsOffered: 2, computing: true },
      `pieces ${pieces.join(',')}`
    )
    assert.equal(tensorsFromCache(meter.count), 1)
    assert.deepEqual(
      deltas.flatMap((d) => (d.offeredHash === undefined ? [] : [d.offeredHash])),
      ['af63dc4c8601ec8c', '0000000000000123']
    )
    assert.equal(
      deltas.reduce((sum, d) => sum + d.weightBytes, 0),
      big + 1000
    )
  }
})

test('a stream that is not the protocol stops the count instead of guessing', () => {
  const meter = new RpcLoadMeter()
  meter.feed(Buffer.concat([setTensor(10), Buffer.from([200, 1, 0, 0, 0, 0, 0, 0, 0, 0]), setTensor(10)]))
  assert.equal(meter.count.weightBytes, 10)
})
