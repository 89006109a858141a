import { test } from 'node:test'
import assert from 'node:assert/strict'
import { xsalsa20 } from '@noble/ciphers/salsa.js'
import { decodeSwarmKey, XSalsa20Stream } from './private-network.js'

const key = Uint8Array.from({ length: 32 }, (_, i) => (i * 7 + 3) & 255)
const nonce = Uint8Array.from({ length: 24 }, (_, i) => (255 - i * 5) & 255)
// The keystream `xsalsa20@1.2.0` (what @libp2p/pnet used, so what other pnet peers send) produced for this
// key and nonce when fed zero chunks of 1, 63, 64, 72, 3 and 130 bytes: the wire format we must keep.
const PNET_KEYSTREAM =
  '94939612818b32b4bf1189bd35088e22f9db89b92b2fdf0b7dce714f7fa8152289902f749a21d252c0cdbc43d94d953edd5127c665dfdff797d2a9688d49b3de' +
  '249bf04e1d6ebaf99ff87f3307cf46e32885e0d30a815a8a6600d5f887f8e2f120c0bc64253eb1ac6cf485745253d42ce289c128e43b2c4e6f3df0daa276bcbb7' +
  '8925590c4cb507ee8701c5dd7643fe522140b3a987aeb5ffe99f227fda93fa76c2fdeca0eeecfa8067bc6a98ff834f01538fac06e1002e62206247d02fd6fe5af7' +
  'e7bdce329e5cd7d165bf897692e179196aa41ee00f3efe1514e925901374c38eecd4d48fde8c502706034108b4041689985e4557481a128d4960e8dc6cbecc335f' +
  'afb96d38748884d9516820d786e577f94e80fdff169ff62c8200e1e182d0482eed5dc9b5d21c9f390803370119e5305f86893de3ed5eaaee72604d05f61358c73' +
  '96b77f6d179bb10e94ea'

test('the keystream, fed in chunks that straddle blocks, is byte for byte what @libp2p/pnet peers use', () => {
  const stream = new XSalsa20Stream(key, nonce)
  const out = [1, 63, 64, 72, 3, 130].map((n) => Buffer.from(stream.update(new Uint8Array(n))))
  assert.equal(Buffer.concat(out).toString('hex'), PNET_KEYSTREAM)
})

test('any chunking gives the one-shot result; decrypting undoes encrypting', () => {
  const data = Uint8Array.from({ length: 5000 }, (_, i) => (i * 31) & 255)
  const whole = xsalsa20(key, nonce, data)
  const sender = new XSalsa20Stream(key, nonce)
  const receiver = new XSalsa20Stream(key, nonce)
  const cipher: Buffer[] = []
  const plain: Buffer[] = []
  let at = 0
  for (const size of [0, 1, 2, 61, 64, 65, 127, 128, 1000, 4096]) {
    const chunk = data.subarray(at, Math.min(data.length, at + size))
    at += chunk.length
    const encrypted = sender.update(chunk)
    cipher.push(Buffer.from(encrypted))
    plain.push(Buffer.from(receiver.update(encrypted)))
  }
  assert.equal(at, data.length)
  assert.deepEqual(Buffer.concat(cipher), Buffer.from(whole))
  assert.deepEqual(Buffer.concat(plain), Buffer.from(data))
})

test('swarm keys: the go-ipfs format is read, anything else named as such', () => {
  const hex = 'ab'.repeat(32)
  assert.deepEqual(decodeSwarmKey(new TextEncoder().encode(`/key/swarm/psk/1.0.0/\n/base16/\n${hex}\n`)), new Uint8Array(32).fill(0xab))
  assert.throws(() => decodeSwarmKey(new TextEncoder().encode('hello')), /Expected a swarm key/)
  assert.throws(() => new XSalsa20Stream(new Uint8Array(16), nonce), /Expected a 32-byte key, got 16 bytes/)
})
