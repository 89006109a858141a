import { test } from 'node:test'
import assert from 'node:assert/strict'
import {
  encodeIntroductions,
  IntroducedDials,
  MAX_INTRODUCED_ADDRESSES,
  MAX_INTRODUCTIONS,
  MAX_INTRODUCTIONS_BYTES,
  parseIntroductions,
  strangersToDial
} from './introductions.js'

const bytesOf = (value: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(value))

test('introductions round-trip, trimmed to the limits the reader enforces', () => {
  const members = Array.from({ length: MAX_INTRODUCTIONS + 10 }, (_, i) => ({
    peerId: `p${i}`,
    addresses: Array.from({ length: 20 }, (_, j) => `/ip4/10.0.0.${j}/tcp/${4000 + i}`)
  }))
  const encoded = encodeIntroductions(members)
  assert.ok(encoded.byteLength <= MAX_INTRODUCTIONS_BYTES)
  const parsed = parseIntroductions(encoded)
  assert.ok(parsed.ok)
  assert.equal(parsed.value.length, MAX_INTRODUCTIONS)
  assert.deepEqual(parsed.value[3], { peerId: 'p3', addresses: members[3]?.addresses.slice(0, MAX_INTRODUCED_ADDRESSES) })
})

test('a newer release`s extra fields are kept out of the way; bad answers are one reason each', () => {
  const newer = parseIntroductions(bytesOf({ v: 1, members: [{ peerId: 'a', addresses: ['/memory/a'], rank: 3 }], hint: 'x' }))
  assert.deepEqual(newer, { ok: true, value: [{ peerId: 'a', addresses: ['/memory/a'] }] })
  const reasons = [
    new TextEncoder().encode('{not json'),
    bytesOf({ v: 2, members: [] }),
    bytesOf({ v: 1, members: [{ peerId: '', addresses: [] }] }),
    bytesOf({ v: 1, members: [{ peerId: 'a', addresses: Array(MAX_INTRODUCED_ADDRESSES + 1).fill('/memory/a') }] }),
    new Uint8Array(MAX_INTRODUCTIONS_BYTES + 1)
  ].map((raw) => {
    const parsed = parseIntroductions(raw)
    assert.equal(parsed.ok, false)
    return parsed.ok ? '' : parsed.reason.split(':')[0]
  })
  assert.deepEqual(reasons, ['invalid', 'invalid', 'invalid', 'invalid', 'too large'])
})

test('only strangers are dialled: not self, not the known or connected, not without an address, each once', () => {
  const known = new Set(['member'])
  const picked = strangersToDial(
    [
      { peerId: 'self', addresses: ['/memory/self'] },
      { peerId: 'member', addresses: ['/memory/member'] },
      { peerId: 'silent', addresses: [] },
      { peerId: 'new', addresses: ['/memory/new'] },
      { peerId: 'new', addresses: ['/memory/elsewhere'] }
    ],
    'self',
    (id) => known.has(id)
  )
  assert.deepEqual(picked, [{ peerId: 'new', addresses: ['/memory/new'] }])
})

test('introduced dials: each peer once per window, at most the limit in one; the window frees them again', () => {
  const dials = new IntroducedDials(1000, 3)
  assert.equal(dials.take('a', 0), true)
  assert.equal(dials.take('a', 10), false, 'once per window')
  assert.equal(dials.take('b', 20), true)
  assert.equal(dials.take('c', 30), true)
  assert.equal(dials.take('d', 40), false, 'the limit of the window')
  assert.equal(dials.take('d', 1000), true, "a's slot is free again")
  assert.equal(dials.take('a', 1010), false, 'the limit again: b, c and d')
  assert.equal(dials.take('a', 1020), true, "b's slot freed")
})
