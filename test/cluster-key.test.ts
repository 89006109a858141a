/** Closed clusters: only agents holding the cluster key connect; others, with another key or none, see nothing. */
import { after, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateClusterKey } from '@sollol/mesh'
import { TestNetwork } from './helpers/netns.js'
import { CLI, TestAgent } from './helpers/agents.js'
import { waitFor } from './helpers/wait.js'

const dir = mkdtempSync(join(tmpdir(), 'sollol-key-'))
const key = join(dir, 'cluster.key')
const otherKey = join(dir, 'other.key')
writeFileSync(key, generateClusterKey(), { mode: 0o600 })
writeFileSync(otherKey, generateClusterKey(), { mode: 0o600 })
const network = TestNetwork.create([{}, {}, {}, {}])
const h1 = network.host(0)
const h2 = network.host(1)
const h3 = network.host(2)
const h4 = network.host(3)
const common = ['--rpc-threads', '1']
const member1 = new TestAgent(h1, dir, [...common, '--cluster-key', key])
const member2 = new TestAgent(h2, dir, [...common, '--cluster-key', key])
// Actively tries to join: bootstraps to a member with the wrong key, and with none.
const wrongKey = new TestAgent(h3, dir, [...common, '--cluster-key', otherKey, '--bootstrap', `/ip4/${h1.address}/tcp/7490`])
const noKey = new TestAgent(h4, dir, [...common, '--bootstrap', `/ip4/${h1.address}/tcp/7490`])
const all = [member1, member2, wrongKey, noKey]

after(async () => {
  await Promise.all(all.map(async (a) => await a.stop()))
  network.destroy()
  rmSync(dir, { recursive: true, force: true })
})

test('only agents with the cluster key connect, list each other and see state', async () => {
  for (const a of all) a.start()
  await waitFor('the two key holders to see each other', () => member1.peers().length === 2 && member2.peers().length === 2, {
    timeoutMs: 30_000
  })
  await waitFor('the outsiders to be up', () => wrongKey.view() !== undefined && noKey.view() !== undefined, { timeoutMs: 30_000 })
  // Give the outsiders several redial rounds (2 s each) against the bootstrap address, then check.
  const outsiders = [wrongKey.view()!.self, noKey.view()!.self]
  await waitFor(
    'several bootstrap attempts by the outsiders',
    () => /bootstrap dial failed/.test(wrongKey.log()) && /bootstrap dial failed/.test(noKey.log()),
    { timeoutMs: 20_000 }
  )
  for (const member of [member1, member2]) {
    const view = await member.statusJson()
    assert.equal(view.nodes.length, 2)
    assert.ok(!view.nodes.some((n) => outsiders.includes(n.peerId)), 'no outsider listed')
    assert.equal(view.discovery.connectedPeers, 1, 'connected only to the other key holder')
    assert.equal(view.discovery.closed, true)
  }
  for (const outsider of [wrongKey, noKey]) {
    assert.deepEqual(outsider.peers(), [outsider.view()!.self])
    assert.equal(outsider.view()!.discovery.connections, 0)
  }
  assert.match(noKey.log(), /the cluster is OPEN/)
  assert.equal(noKey.view()!.discovery.closed, false)

  // Asking a member's state over libp2p: refused without the key, answered with it.
  const address = `/ip4/${h1.address}/tcp/7490/p2p/${member1.view()!.self}`
  const refused = await h4.run(process.execPath, [CLI, 'status', '--json', '--peer', address, '--api-port', '1'])
  assert.notEqual(refused.exitCode, 0)
  const answered = await h4.run(process.execPath, [CLI, 'status', '--json', '--peer', address, '--api-port', '1', '--cluster-key', key])
  assert.equal(answered.exitCode, 0, String(answered.stderr))
  assert.equal((JSON.parse(String(answered.stdout)) as { nodes: unknown[] }).nodes.length, 2)
})

test('an unreadable or malformed key is one line and exit code 2', async () => {
  const bad = join(dir, 'bad.key')
  writeFileSync(bad, 'not a key')
  for (const [file, pattern] of [
    [bad, /Expected .*bad\.key to be a cluster key/],
    [join(dir, 'missing.key'), /Expected a readable cluster key at .*missing\.key, got ENOENT/]
  ] as const) {
    const result = await h4.run(process.execPath, [CLI, 'start', '--no-setup', '--cluster-key', file])
    assert.equal(result.exitCode, 2, String(result.stderr))
    assert.match(String(result.stderr), pattern)
    assert.doesNotMatch(String(result.stderr), /\n\s+at /)
  }
  const keygen = await h4.run(process.execPath, [CLI, 'keygen', '--out', key])
  assert.equal(keygen.exitCode, 2, 'keygen does not overwrite a key')
})
