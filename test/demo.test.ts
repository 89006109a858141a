/**
 * `sollol-agent demo` as a user runs it (with --exit-after-ready --json), on a test host that has a LAN
 * interface: the demo cluster must serve, spread over its three agents, and stay on loopback (no mDNS, only
 * 127.0.0.1 addresses announced and listened on), and it must leave no process behind.
 */
import { after, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execaSync } from 'execa'
import type { ClusterView } from '@sollol/core'
import { TestNetwork } from './helpers/netns.js'
import { CLI } from './helpers/agents.js'

const dir = mkdtempSync(join(tmpdir(), 'sollol-demo-'))
const network = TestNetwork.create([{}])
const host = network.host(0)

after(() => {
  network.destroy()
  rmSync(dir, { recursive: true, force: true })
})

test('the demo serves over three loopback agents, prints a completion, stays off the LAN and cleans up', async () => {
  const started = Date.now()
  const result = await host.run(process.execPath, [CLI, 'demo', '--exit-after-ready', '--json', '--dir', dir, '--timeout', '240'])
  assert.equal(result.exitCode, 0, String(result.stderr))
  const out = JSON.parse(String(result.stdout)) as {
    cluster: string
    readyMs: number
    completion: { text: string; ms: number }
    view: ClusterView
  }
  const view = out.view
  assert.match(out.cluster, /^demo-[0-9a-f]{6}$/)
  assert.equal(view.nodes.length, 3)
  assert.equal(view.plan?.server.state, 'ready')
  assert.equal(typeof out.completion.text, 'string')
  assert.equal(
    new Set(view.plan.assignments.filter((a) => a.layers !== null).map((a) => a.peerId)).size,
    3,
    'the model spans all three agents'
  )
  // Nothing on the LAN: mDNS off, and every address announced or listened on is loopback.
  assert.equal(view.discovery.mdns, 'disabled')
  assert.equal(view.discovery.closed, true, 'the demo runs with a cluster key')
  for (const node of view.nodes) {
    assert.ok(node.addresses.length > 0)
    for (const a of node.addresses) assert.match(a, /^\/ip4\/127\.0\.0\.1\//, `${node.peerId} announces ${a}`)
    assert.equal(node.rpc.host, '127.0.0.1')
  }
  for (const a of view.discovery.listen) assert.match(a, /^\/ip4\/127\.0\.0\.1\//)
  assert.match(view.plan.server.url, /^http:\/\/127\.0\.0\.1:/)
  // The demo stopped everything it started.
  const pids = execaSync('ip', ['netns', 'pids', host.name]).stdout.trim()
  assert.equal(pids, '', `processes left in the namespace: ${pids}`)
  process.stdout.write(`# demo ready in ${out.readyMs} ms (whole command ${Date.now() - started} ms), completion ${out.completion.ms} ms\n`)
})
