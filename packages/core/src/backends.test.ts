import { test } from 'node:test'
import assert from 'node:assert/strict'
import { exclusionReason, rpcProtocolCompatible } from './backends.js'
import type { Announcement } from './announcement.js'

const rpc = (over: Partial<Announcement['rpc']> = {}): Pick<Announcement, 'rpc'> => ({
  rpc: { host: '10.0.0.2', port: 50052, protocol: '6.0.0', state: 'ready', llamaBuild: 'b1', servingTerm: 3, access: 'direct', ...over }
})

test('protocol compatibility follows llama.cpp', () => {
  assert.equal(rpcProtocolCompatible('6.1.0', '6.0.5'), true)
  assert.equal(rpcProtocolCompatible('6.0.0', '6.1.0'), false)
  assert.equal(rpcProtocolCompatible('6.0.0', '5.0.0'), false)
  assert.equal(rpcProtocolCompatible(null, '6.0.0'), false)
})

test('exclusion reasons: state, version skew (named), fencing; none for a good backend', () => {
  const self = rpc()
  const node = (over: Partial<Announcement['rpc']>): Announcement => ({ ...rpc(over) }) as unknown as Announcement
  assert.equal(exclusionReason(node({}), self, 3), null)
  assert.equal(exclusionReason(node({ state: 'restarting' }), self, 3), 'rpc-server restarting')
  assert.match(
    exclusionReason(node({ protocol: '5.0.0', llamaBuild: 'b0' }), self, 3) ?? '',
    /RPC protocol 5\.0\.0 \(llama\.cpp b0\) does not match the coordinator's 6\.0\.0/
  )
  assert.match(exclusionReason(node({ servingTerm: 2 }), self, 3) ?? '', /not yet restarted for term 3/)
  assert.equal(exclusionReason(node({ servingTerm: 2 }), self, undefined), null)
  assert.equal(exclusionReason(node({ state: 'external' }), self, 3), null)
})
