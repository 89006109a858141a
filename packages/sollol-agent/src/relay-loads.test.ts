import { test } from 'node:test'
import assert from 'node:assert/strict'
import { encodeHello, encodeRequest, RPC_HASH_THRESHOLD, RPC_TENSOR_BYTES, RpcRequest } from '@sollol/llama-cpp'
import { RelayLoads } from './relay-loads.js'

const setTensor = (dataBytes: number): Buffer => encodeRequest(RpcRequest.SET_TENSOR, new Uint8Array(RPC_TENSOR_BYTES + 8 + dataBytes))
const offer = (): Buffer => encodeRequest(RpcRequest.SET_TENSOR_HASH, new Uint8Array(RPC_TENSOR_BYTES + 16))
const compute = (): Buffer => encodeRequest(RpcRequest.GRAPH_COMPUTE, new Uint8Array(8))

test('a load spans the connections opened while one is open; a new one starts after all closed', () => {
  const hashes: string[] = []
  let done = 0
  const loads = new RelayLoads(
    (h) => hashes.push(h),
    () => done++,
    () => 0
  )
  const current = (): unknown => loads.current // read afresh: the assertions would narrow a property
  assert.equal(current(), null)
  const a = loads.connection()
  const b = loads.connection()
  a.feed(Buffer.concat([encodeHello(), offer(), offer(), setTensor(RPC_HASH_THRESHOLD + 5)]))
  b.feed(Buffer.concat([encodeHello(), setTensor(100), compute(), setTensor(7)]))
  assert.deepEqual(current(), {
    startedAt: new Date(0).toISOString(),
    weightBytes: RPC_HASH_THRESHOLD + 105,
    tensorsFromCache: 1,
    tensorsSent: 1,
    done: true
  })
  assert.deepEqual(hashes, ['0000000000000000', '0000000000000000'])
  assert.equal(done, 1)
  a.close()
  a.close() // closing twice counts once
  const c = loads.connection() // b is still open: the same load
  c.feed(setTensor(1))
  assert.equal(loads.current?.weightBytes, RPC_HASH_THRESHOLD + 106)
  b.close()
  c.close()
  const d = loads.connection()
  d.feed(Buffer.concat([encodeHello(), setTensor(3)]))
  assert.deepEqual(current(), { startedAt: new Date(0).toISOString(), weightBytes: 3, tensorsFromCache: 0, tensorsSent: 0, done: false })
  assert.equal(loads.weightBytesTotal, RPC_HASH_THRESHOLD + 109)
})
