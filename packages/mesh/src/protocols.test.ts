/**
 * The names on the wire are what agents of different releases meet on: a renamed topic or protocol
 * splits a rolling upgrade without an error anywhere. Pinned here; changing one is a new version of it.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MAX_ANNOUNCEMENT_BYTES } from '@sollol/core'
import {
  announceTopic,
  heartbeatProtocol,
  helloProtocol,
  introductionsProtocol,
  livenessTopic,
  mdnsServiceTag,
  stateProtocol,
  tunnelProtocol,
  WIRE
} from './protocols.js'
import { BEAT_BYTES } from './heartbeat.js'

test('every topic and protocol keeps the name older releases use', () => {
  assert.equal(announceTopic('c'), '/sollol/c/announce/1')
  assert.equal(livenessTopic('c'), '/sollol/c/liveness/1')
  assert.equal(helloProtocol('c'), '/sollol/c/hello/1.0.0')
  assert.equal(stateProtocol('c'), '/sollol/c/state/1.0.0')
  assert.equal(introductionsProtocol('c'), '/sollol/c/introductions/1.0.0')
  assert.equal(heartbeatProtocol('c'), '/sollol/c/heartbeat/1.0.0')
  assert.equal(tunnelProtocol('c', 'rpc'), '/sollol/c/tunnel/rpc/1.0.0')
  assert.equal(mdnsServiceTag('c'), '_sollol-c._udp.local')
  assert.equal(mdnsServiceTag('c', 'ab12'), '_sollol-c-ab12._udp.local')
})

test('the table lists every entry with its limit: what is read is bounded, except a tunnel`s plain bytes', () => {
  assert.deepEqual(Object.keys(WIRE).sort(), ['announce', 'heartbeat', 'hello', 'introductions', 'liveness', 'state', 'tunnel'])
  for (const [name, entry] of Object.entries(WIRE)) {
    if (name === 'tunnel') assert.equal(entry.maxBytes, null)
    else assert.ok(entry.maxBytes !== null && entry.maxBytes > 0, `${name} has a size limit`)
  }
  // an answer to hello is an announcement: the same limit as gossiped ones
  assert.equal(WIRE.hello.maxBytes, MAX_ANNOUNCEMENT_BYTES)
  assert.equal(WIRE.heartbeat.maxBytes, BEAT_BYTES)
})
