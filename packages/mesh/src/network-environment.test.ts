import { test } from 'node:test'
import assert from 'node:assert/strict'
import { hasMulticastRoute } from './network-environment.js'

const HEADER = 'Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT'

test('a default route or a 224.0.0.0/4 route lets mDNS send; a LAN-only route does not', () => {
  const defaultRoute = `${HEADER}\neth0\t00000000\t0100000A\t0003\t0\t0\t0\t00000000\t0\t0\t0`
  const multicast = `${HEADER}\neth0\t0000D50A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\neth0\t000000E0\t00000000\t0001\t0\t0\t0\t000000F0\t0\t0\t0`
  const lanOnly = `${HEADER}\neth0\t0000D50A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0`
  assert.equal(hasMulticastRoute(defaultRoute), true)
  assert.equal(hasMulticastRoute(multicast), true)
  assert.equal(hasMulticastRoute(lanOnly), false)
  assert.equal(hasMulticastRoute(HEADER), false)
})
