/**
 * If an agent dies anyway, it says why and comes back: an exception that reaches the event loop (injected
 * here through node's --import, no hook in the agent) is logged as one line, the agent exits 1 (what makes
 * systemd's Restart=on-failure restart it), its rpc-server dies with it, and started again it rejoins with
 * the same peer id and its cached calibration.
 */
import { after, test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { TestNetwork } from './helpers/netns.js'
import { TestAgent } from './helpers/agents.js'
import { isAlive, waitFor } from './helpers/wait.js'

const dir = mkdtempSync(join(tmpdir(), 'sollol-crash-'))
const network = TestNetwork.create([{}, {}])
const victim = new TestAgent(network.host(0), dir, ['--rpc-threads', '1'])
const peer = new TestAgent(network.host(1), dir, ['--rpc-threads', '1'])

after(async () => {
  await Promise.all([victim.stop(), peer.stop()])
  network.destroy()
  if (process.env.SOLLOL_KEEP_TEST_LOGS === undefined) rmSync(dir, { recursive: true, force: true })
})

// Throws from a timer once the agent has joined (the file the watcher sees marks that moment).
const FAULT = `data:text/javascript,${encodeURIComponent(
  "import { existsSync } from 'node:fs'; const t = setInterval(() => { if (existsSync(process.env.SOLLOL_FAULT_FLAG)) { clearInterval(t); throw new Error('injected fault') } }, 50)"
)}`

test('an escaped exception: one log line, exit 1, children gone; restarted, it rejoins with its identity and cached calibration', async () => {
  const flag = join(dir, 'fault-now')
  process.env.SOLLOL_FAULT_FLAG = flag
  peer.start()
  victim.start(['--import', FAULT])
  await waitFor('both agents to see each other', () => victim.peers().length === 2 && peer.peers().length === 2, { timeoutMs: 30_000 })
  // its rpc-server's speed is measured once (in the background) and kept in the data dir
  // (written after it is measured: the fault must not come between the two)
  const calibration = join(victim.dataDir, 'calibration.json')
  await waitFor('the speed measured and kept', () => existsSync(calibration) && JSON.parse(readFileSync(calibration, 'utf8')) !== null, {
    timeoutMs: 60_000
  })
  const id = victim.view()!.self
  const rpcPid = Number(/"component":"rpc-server".*?"pid":(\d+)/.exec(victim.log())?.[1])
  assert.ok(rpcPid > 0 && isAlive(rpcPid), 'the rpc-server runs')

  writeFileSync(flag, '')
  await waitFor('the agent to exit', () => victim.exitCode() !== null, { timeoutMs: 15_000 })
  assert.equal(victim.exitCode(), 1)
  const died = victim
    .log()
    .split('\n')
    .filter((line) => line.includes('agent died'))
  assert.equal(died.length, 1, died.join('\n'))
  assert.match(died[0] ?? '', /agent died: Error: injected fault/)
  await waitFor('its rpc-server to die with it', () => !isAlive(rpcPid), { timeoutMs: 5000 })
  await waitFor('the peer to see it leave', () => peer.peers().length === 1, { timeoutMs: 15_000 })

  // what systemd does after RestartSec
  delete process.env.SOLLOL_FAULT_FLAG
  victim.start()
  await waitFor('it to rejoin', () => victim.peers().length === 2 && peer.peers().includes(id), { timeoutMs: 30_000 })
  assert.equal(victim.view()!.self, id, 'same peer id')
  await waitFor('its speed announced', () => victim.view()?.nodes.find((n) => n.peerId === id)?.speed != null, { timeoutMs: 30_000 })
  const measured = victim
    .log()
    .split('\n')
    .filter((line) => line.includes('rpc-server speed measured'))
  assert.equal(measured.length, 1, 'the speed measured at the first start is reused')
})
