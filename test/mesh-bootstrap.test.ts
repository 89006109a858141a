/** Where multicast cannot work, the agent says so (log and status) instead of silently seeing nobody, and --bootstrap joins. */
import { after, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { TestNetwork } from './helpers/netns.js'
import { TestAgent } from './helpers/agents.js'
import { waitFor } from './helpers/wait.js'

const dir = mkdtempSync(join(tmpdir(), 'sollol-boot-'))
const network = TestNetwork.create([{}, { multicastRoute: false }])
const normal = new TestAgent(network.hosts[0]!, dir, ['--rpc-threads', '1'])
const isolated = new TestAgent(network.hosts[1]!, dir, ['--rpc-threads', '1', '--bootstrap', `/ip4/${network.hosts[0]!.address}/tcp/7490`])

after(async () => {
  await Promise.all([normal.stop(), isolated.stop()])
  network.destroy()
  rmSync(dir, { recursive: true, force: true })
})

test('no multicast route: mDNS is reported unavailable, and --bootstrap still joins the cluster', async () => {
  normal.start()
  isolated.start()
  await waitFor('both agents to see each other', () => normal.peers().length === 2 && isolated.peers().length === 2, { timeoutMs: 20_000 })
  const view = await isolated.statusJson()
  assert.equal(view.discovery.mdns, 'unavailable')
  assert.match(view.discovery.reason ?? '', /no route to 224\.0\.0\.0\/4/)
  assert.match(isolated.log(), /mDNS discovery cannot work here/)
  assert.equal((await normal.statusJson()).discovery.mdns, 'ok')
})
