import { test } from 'node:test'
import assert from 'node:assert/strict'
import { byteSize, endpoint, formatBytes, integer, memoryLimits, oneOf, parseRpcBackends, positiveNumber } from './options.js'

test('option parsers accept good values and name what they expected otherwise', () => {
  assert.equal(integer('--port', 1, 65535)('8080'), 8080)
  assert.throws(() => integer('--port', 1, 65535)('abc'), /Expected --port to be an integer 1-65535, got `abc`/)
  assert.throws(() => integer('--port', 1, 65535)('70000'), /got `70000`/)
  assert.throws(() => integer('--port', 1, 65535)('8.5'), /got `8.5`/)
  assert.equal(positiveNumber('--rpc-speed')('0.25'), 0.25)
  assert.throws(() => positiveNumber('--rpc-speed')('0'), /Expected --rpc-speed to be a number greater than 0, got `0`/)
  assert.throws(() => positiveNumber('--rpc-speed')('fast'), /got `fast`/)
  assert.equal(oneOf('--type', ['f32', 'f16'])('f16'), 'f16')
  assert.throws(() => oneOf('--type', ['f32', 'f16'])('q4'), /one of f32, f16, got `q4`/)
  assert.deepEqual(endpoint('<e>')('127.0.0.1:50052'), { host: '127.0.0.1', port: 50052 })
  assert.throws(() => endpoint('<e>')('127.0.0.1'), /host:port/)
  assert.equal(byteSize('--max-memory')('8G'), 8 * 1024 ** 3)
  assert.equal(byteSize('--max-memory')('1.5GiB'), 1.5 * 1024 ** 3)
  assert.equal(byteSize('--max-memory')('512'), 512)
  assert.throws(() => byteSize('--max-memory')('lots'), /size like 512M/)
})

test('formatBytes uses binary units', () => {
  assert.equal(formatBytes(512), '512 B')
  assert.equal(formatBytes(1536), '1.5 KiB')
  assert.equal(formatBytes(24 * 1024 ** 3), '24.0 GiB')
})

test('rpc backends files: SOLLOL conf lines with comments, or SynapticLlamas JSON; a bad line is named', () => {
  assert.deepEqual(parseRpcBackends('# workers\n10.0.0.5:50052\n\n  10.0.0.6:50053  # gpu box\n', 'f'), [
    { host: '10.0.0.5', port: 50052 },
    { host: '10.0.0.6', port: 50053 }
  ])
  assert.deepEqual(parseRpcBackends('{"rpc_backends": [{"host": "10.0.0.7", "port": 50052}]}', 'f'), [{ host: '10.0.0.7', port: 50052 }])
  assert.throws(() => parseRpcBackends('10.0.0.5:50052\nnot-an-endpoint\n', 'backends.conf'), /line 2 of backends\.conf to be host:port/)
  assert.throws(() => parseRpcBackends('{"rpc_backends": [{"host": 1}]}', 'f'), /rpc_backends\[0\] in f to be \{ host, port \}/)
})

test('--max-memory takes a plain size (the node) or sizes per device', () => {
  const parse = memoryLimits('--max-memory')
  assert.deepEqual(parse('8GiB'), { node: 8 * 1024 ** 3, devices: {} })
  assert.deepEqual(parse('CUDA0=14GiB,CPU=8GiB'), { node: 8 * 1024 ** 3, devices: { CUDA0: 14 * 1024 ** 3 } })
  assert.deepEqual(parse('Vulkan0=512M'), { devices: { Vulkan0: 512 * 1024 ** 2 } })
  assert.throws(() => parse('CUDA0=lots'), /Expected --max-memory to be a size like 512M or 8G, got `lots`/)
  assert.throws(() => parse('CUDA0=1G,=2G'), /DEVICE=SIZE pairs/)
})
