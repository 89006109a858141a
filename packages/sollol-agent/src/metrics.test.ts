import { test } from 'node:test'
import assert from 'node:assert/strict'
import { dropKind } from '@sollol/mesh'
import type { ClusterView } from '@sollol/core'
import { AgentMetrics } from './metrics.js'

test('counters end in _total and count; drop reasons are a small fixed set of kinds', async () => {
  assert.equal(dropKind('invalid at devices.0.kind: Invalid option'), 'invalid')
  assert.equal(dropKind('invalid at rpc.port: Too big'), 'invalid')
  assert.equal(dropKind('too large: 70000 bytes'), 'too large')
  assert.equal(dropKind('impersonation: 12D3KooWa announced 12D3KooWb'), 'impersonation')
  assert.equal(dropKind('incompatible: version 99, this agent speaks 1-1'), 'incompatible')
  assert.equal(dropKind('not JSON'), 'not JSON')

  const view = {
    nodes: [],
    coordinator: null,
    plan: null,
    weightsOverLan: null,
    counters: { announcementsIn: 7, announcementsOut: 3, dropped: 2, dropReasons: { invalid: 2 }, tunnelsOpened: 0, tunnelsRefused: 0 }
  } as unknown as ClusterView
  const metrics = new AgentMetrics({
    view: () => view,
    rpcRestarts: () => 2,
    relayed: () => ({ totalBytes: 5e8, lastLoadBytes: 3e6, cacheBytes: 1e9 }),
    llama: () => ({ serving: false, causes: { 'first plan': 1, 'liveness failed': 2 }, metricsUrl: undefined, token: undefined })
  })
  const text = await metrics.text()
  for (const line of [
    'sollol_rpc_server_restarts_total 2',
    'sollol_llama_server_starts_total{cause="liveness failed"} 2',
    'sollol_gossip_messages_total{direction="in"} 7',
    'sollol_gossip_dropped_total{reason="invalid"} 2',
    'sollol_rpc_weight_bytes_received_total 500000000',
    'sollol_rpc_last_load_weight_bytes 3000000',
    'sollol_rpc_tensor_cache_bytes 1000000000'
  ])
    assert.ok(text.includes(line), `${line} in\n${text}`)
  assert.equal((await metrics.text()).includes('sollol_rpc_server_restarts_total 2'), true, 'a second scrape does not add up')
  assert.doesNotMatch(text, /# TYPE sollol_\w+(?<!_total) counter/)
})
