import { test } from 'node:test'
import assert from 'node:assert/strict'
import {
  decodeDeviceMemory,
  decodeHello,
  encodeGetDeviceMemory,
  encodeHello,
  isCompatibleRpcVersion,
  RpcProtocolError,
  takeReply
} from './rpc-protocol.js'

test('requests are cmd u8, length u64 LE, payload', () => {
  const hello = encodeHello()
  assert.equal(hello.length, 1 + 8 + 24)
  assert.equal(hello[0], 14)
  assert.equal(hello.readBigUInt64LE(1), 24n)
  assert.deepEqual(encodeGetDeviceMemory(3), Buffer.from([11, 4, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0]))
})

test('takeReply waits for a whole reply and rejects a wrong length', () => {
  const reply = Buffer.concat([Buffer.from([28, 0, 0, 0, 0, 0, 0, 0]), Buffer.from([6, 0, 0, 0]), Buffer.alloc(24), Buffer.from([9])])
  assert.equal(takeReply(reply.subarray(0, 20), 28), undefined)
  const whole = takeReply(reply, 28)
  assert.deepEqual(decodeHello(whole?.payload ?? Buffer.alloc(3)), { major: 6, minor: 0, patch: 0 })
  assert.deepEqual(whole?.rest, Buffer.from([9]))
  assert.throws(() => takeReply(Buffer.from([3, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3]), 28), RpcProtocolError)
})

test('device memory decodes two u64', () => {
  const payload = Buffer.alloc(16)
  payload.writeBigUInt64LE(5n * 2n ** 30n, 0)
  payload.writeBigUInt64LE(8n * 2n ** 30n, 8)
  assert.deepEqual(decodeDeviceMemory(payload), { free: 5 * 2 ** 30, total: 8 * 2 ** 30 })
})

test('version compatibility follows llama.cpp: same major, server minor not newer', () => {
  const client = { major: 6, minor: 1, patch: 0 }
  assert.equal(isCompatibleRpcVersion(client, { major: 6, minor: 0, patch: 9 }), true)
  assert.equal(isCompatibleRpcVersion(client, { major: 6, minor: 2, patch: 0 }), false)
  assert.equal(isCompatibleRpcVersion(client, { major: 5, minor: 0, patch: 0 }), false)
})
