/**
 * Twenty agents started at once on test hosts (a 2-core machine: twenty Node.js processes, rpc-servers and
 * speed tests booting together) form one cluster with no configuration: every agent lists all twenty and
 * holds one connection per peer. (They did not: a peer whose first dial failed under that load was never
 * dialled again, and most agents listed only themselves.) One observer process polls every agent's API
 * (on its host's address) every 500 ms, so that observing does not add twenty more processes.
 * Then liveness on the ring (liveness.ts): each agent beats and watches four neighbours, not nineteen; an
 * agent frozen with SIGSTOP (its connections stay open) is reported by its watchers and leaves every view
 * within the 10 s bound, and after SIGCONT it is back in every view.
 */
import { after, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { TestNetwork } from './helpers/netns.js'
import { TestAgent } from './helpers/agents.js'

const N = 20
const TIMEOUT_MS = 300_000
const dir = mkdtempSync(join(tmpdir(), 'sollol-twenty-'))
const network = TestNetwork.create(Array.from({ length: N }, () => ({})))
const agents = network.hosts.map(
  (host) => new TestAgent(host, dir, ['--rpc-threads', '1', '--max-memory', '64MiB', '--api-host', host.address], false)
)

after(async () => {
  await Promise.all(agents.map(async (a) => await a.stop()))
  network.destroy()
  if (process.env.SOLLOL_KEEP_TEST_LOGS === undefined) rmSync(dir, { recursive: true, force: true })
})

// Polls every agent until all list n nodes and hold n-1 connections to n-1 peers; prints what it saw.
const OBSERVER = `
const [n, timeoutMs, ...urls] = [Number(process.argv[2]), Number(process.argv[3]), ...process.argv.slice(4)]
const started = Date.now()
const seen = new Map()
const read = async (u) => { try { const r = await fetch(u + '/v1/cluster', { signal: AbortSignal.timeout(5000) }); return await r.json() } catch { return undefined } }
let listedAt = null
for (;;) {
  await Promise.all(urls.map(async (u) => { const v = await read(u); if (v !== undefined) seen.set(u, v) }))
  const views = urls.map((u) => seen.get(u))
  const listed = views.every((v) => v !== undefined && v.nodes.length === n)
  if (listed && listedAt === null) listedAt = Date.now() - started
  const connected = listed && views.every((v) => v.discovery.connectedPeers === n - 1 && v.discovery.connections === n - 1)
  if (connected || Date.now() - started > timeoutMs) {
    console.log(JSON.stringify({ ok: connected, listedAt, connectedAt: connected ? Date.now() - started : null,
      ids: views.map((v) => v?.self ?? null), peers: views.map((v) => v?.nodes.map((x) => x.peerId).sort() ?? []),
      counts: views.map((v) => v?.nodes.length ?? 0), connections: views.map((v) => v ? v.discovery.connections + '/' + v.discovery.connectedPeers : '-') }))
    process.exit(0)
  }
  await new Promise((r) => setTimeout(r, 500))
}
`

// Polls the given agents until each lists exactly n nodes (none of them \`absent\`); prints what it saw.
const COUNT = `
const [n, absent, timeoutMs, ...urls] = [Number(process.argv[2]), process.argv[3], Number(process.argv[4]), ...process.argv.slice(5)]
const started = Date.now()
const read = async (u) => { try { const r = await fetch(u + '/v1/cluster', { signal: AbortSignal.timeout(2000) }); return await r.json() } catch { return undefined } }
for (;;) {
  const views = await Promise.all(urls.map(read))
  const ok = views.every((v) => v !== undefined && v.nodes.length === n && !v.nodes.some((x) => x.peerId === absent))
  if (ok || Date.now() - started > timeoutMs) {
    console.log(JSON.stringify({ ok, elapsed: Date.now() - started, counts: views.map((v) => v?.nodes.length ?? 0),
      watching: views.map((v) => v?.discovery.watching ?? null), counters: views.map((v) => v?.counters ?? null) }))
    process.exit(0)
  }
  await new Promise((r) => setTimeout(r, 200))
}
`

test(`${N} agents started at once form one cluster`, async () => {
  const script = join(dir, 'observer.mjs')
  writeFileSync(script, OBSERVER)
  for (const a of agents) a.start()
  const run = await network
    .host(0)
    .run(process.execPath, [script, String(N), String(TIMEOUT_MS), ...agents.map((a) => `http://${a.host.address}:7491`)], {
      timeout: TIMEOUT_MS + 60_000
    })
  const seen = JSON.parse(String(run.stdout).trim()) as {
    ok: boolean
    listedAt: number | null
    connectedAt: number | null
    ids: Array<string | null>
    peers: string[][]
    counts: number[]
    connections: string[]
  }
  assert.ok(
    seen.ok,
    `one cluster within ${TIMEOUT_MS / 1000} s: listed ${seen.counts.join(',')}; connections ${seen.connections.join(',')}`
  )
  const ids = [...seen.ids].sort()
  for (const peers of seen.peers) assert.deepEqual(peers, ids)
  console.log(
    `${N} agents started at once: every agent listed all ${(seen.listedAt! / 1000).toFixed(1)} s after the start, one connection per pair after ${(seen.connectedAt! / 1000).toFixed(1)} s`
  )

  interface Counted {
    ok: boolean
    elapsed: number
    counts: number[]
    watching: Array<string[] | null>
    counters: Array<Record<string, number> | null>
  }
  const countScript = join(dir, 'count.mjs')
  writeFileSync(countScript, COUNT)
  const urls = agents.map((a) => `http://${a.host.address}:7491`)
  const count = async (n: number, absent: string, timeoutMs: number, only: string[]): Promise<Counted> => {
    const out = await network.host(0).run(process.execPath, [countScript, String(n), absent, String(timeoutMs), ...only], {
      timeout: timeoutMs + 30_000
    })
    return JSON.parse(String(out.stdout).trim()) as Counted
  }

  // at rest on the ring: four neighbours each, the relation symmetric (each one watched by those it watches)
  const rest = await count(N, '-', 10_000, urls)
  assert.ok(rest.ok, `still one cluster: ${rest.counts.join(',')}`)
  const watching = new Map(seen.ids.map((id, i) => [id!, rest.watching[i] ?? []]))
  for (const [id, peers] of watching) {
    assert.equal(peers.length, 4, `${id} watches ${peers.length} peers: ${peers.join(', ')}`)
    for (const peer of peers) assert.ok(watching.get(peer)?.includes(id), `${id} watches ${peer}, not the other way round`)
  }

  // one agent frozen: its connections stay open; its watchers report it and it leaves every other view
  const frozen = 7
  const frozenId = seen.ids[frozen]!
  const others = urls.filter((_, i) => i !== frozen)
  agents[frozen]!.signal('SIGSTOP')
  const gone = await count(N - 1, frozenId, 30_000, others)
  agents[frozen]!.signal('SIGCONT')
  assert.ok(gone.ok, `the frozen agent left every view within 30 s: ${gone.counts.join(',')}`)
  const taken = gone.counters.reduce((sum, c) => sum + (c?.livenessReportsTaken ?? 0), 0)
  assert.ok(taken > 0, 'the others took their word from its watchers')
  assert.ok(gone.elapsed <= 10_000, `a frozen agent leaves every view within 10 s: ${gone.elapsed} ms`)
  const back = await count(N, '-', 60_000, urls)
  assert.ok(back.ok, `after SIGCONT it is back in every view within 60 s: ${back.counts.join(',')}`)
  const refutations = back.counters.reduce((sum, c) => sum + (c?.refutations ?? 0), 0)
  console.log(
    `ring: a frozen agent left all ${N - 1} other views after ${(gone.elapsed / 1000).toFixed(1)} s (${taken} reports taken); ` +
      `back in every view ${(back.elapsed / 1000).toFixed(1)} s after SIGCONT; ${refutations} refutations in all`
  )
})
