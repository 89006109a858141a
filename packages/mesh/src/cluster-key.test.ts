import { test } from 'node:test'
import assert from 'node:assert/strict'
import { clusterKeyFingerprint, generateClusterKey, parseClusterKey } from './cluster-key.js'

test('a generated key parses, and two keys differ', () => {
  const a = generateClusterKey()
  const b = generateClusterKey()
  assert.match(a, /^\/key\/swarm\/psk\/1\.0\.0\/\n\/base16\/\n[0-9a-f]{64}/)
  assert.notEqual(a, b)
  assert.equal(parseClusterKey(a, 'a').length, 96)
  assert.notEqual(clusterKeyFingerprint(parseClusterKey(a, 'a')), clusterKeyFingerprint(parseClusterKey(b, 'b')))
})

test('anything else is one line naming the file', () => {
  assert.throws(() => parseClusterKey('hello', 'k.key'), /Expected k\.key to be a cluster key/)
  assert.throws(() => parseClusterKey('/key/swarm/psk/1.0.0/\n/base16/\nabc\n', 'k.key'), /Expected k\.key/)
})
