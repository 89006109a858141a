/**
 * The dashboard in a real browser (Debian's chromium, driven by playwright-core), opened on a worker that
 * is not the coordinator. It must show, without a reload, the cluster going from "not serving" (two agents
 * offer too little memory) to serving over three, and its node table and layer map must equal /v1/cluster.
 * Chromium runs inside the worker's network namespace (a wrapper script), so it reaches that agent's
 * loopback API and nothing else. The screenshot is saved to test-output/dashboard.png.
 */
import { after, test } from 'node:test'
import assert from 'node:assert/strict'
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium, type Browser } from 'playwright-core'
import type { ClusterView } from '@sollol/core'
import { SPLIT_TEST_MODEL, writeTestModel } from '@sollol/gguf'
import { TestNetwork } from './helpers/netns.js'
import { ROOT, TestAgent } from './helpers/agents.js'
import { waitFor } from './helpers/wait.js'

const CHROMIUM = process.env.SOLLOL_CHROMIUM ?? '/usr/bin/chromium'
const dir = mkdtempSync(join(tmpdir(), 'sollol-dashboard-'))
const model = join(dir, 'model.gguf')
// 16 layers of ~2.5 MiB (40 MiB): each agent offering 32 MiB holds 6 or 7 of them (after
// ~13 MiB of compute-buffer headroom), so two agents cannot serve it and three can.
writeTestModel(model, SPLIT_TEST_MODEL)
const network = TestNetwork.create([{}, {}, {}])
const common = ['--rpc-threads', '1', '--ctx-size', '256', '--max-memory', '32MiB']
const coordinator = new TestAgent(network.host(0), dir, [...common, '--model', model])
const worker = new TestAgent(network.host(1), dir, common)
const late = new TestAgent(network.host(2), dir, common)
const agents = [coordinator, worker, late]
let browser: Browser | undefined

after(async () => {
  await browser?.close()
  await Promise.all(agents.map(async (a) => await a.stop()))
  network.destroy()
  if (process.env.SOLLOL_KEEP_TEST_LOGS === undefined) rmSync(dir, { recursive: true, force: true })
})

/** What the page shows, read from its DOM. */
interface Shown {
  serverState: string
  rows: Array<{ peerId: string; role: string; layers: string }>
  cells: Array<{ layer: string; peerId: string | null }>
  events: string[]
}

test('the dashboard shows the live cluster: nodes, roles and the layer map equal /v1/cluster', async () => {
  assert.ok(existsSync(CHROMIUM), `Expected a Chromium at ${CHROMIUM} (apt-get install chromium), got none`)
  coordinator.start()
  worker.start()
  const notServing = await waitFor(
    'two agents that agree there is no plan (too little memory)',
    () => {
      const v = worker.view()
      return v !== undefined && v.nodes.length === 2 && v.coordinator !== null && v.plan === null ? v : undefined
    },
    { timeoutMs: 60_000 }
  )
  assert.equal(notServing.plan, null)

  // Chromium in the worker's namespace: the wrapper is the "executable" playwright starts.
  const wrapper = join(dir, 'chromium-in-netns.sh')
  writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec ${worker.host.name} ${CHROMIUM} "$@"\n`)
  chmodSync(wrapper, 0o755)
  browser = await chromium.launch({
    executablePath: wrapper,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync'
    ],
    timeout: 60_000
  })
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } })
  await page.goto('http://127.0.0.1:7491/')
  const read = async (): Promise<Shown> =>
    await page.evaluate(() => ({
      serverState: document.querySelector('[data-testid=server-state]')?.textContent ?? '',
      rows: [...document.querySelectorAll('#nodes tr')].map((tr) => ({
        peerId: tr.getAttribute('data-peer') ?? '',
        role: tr.querySelector('[data-testid=role]')?.textContent ?? '',
        layers: tr.querySelector('[data-testid=layers]')?.textContent ?? ''
      })),
      cells: [...document.querySelectorAll('#layermap .layer')].map((c) => ({
        layer: c.getAttribute('data-layer') ?? '',
        peerId: c.getAttribute('data-peer')
      })),
      events: [...document.querySelectorAll('#events li')].map((li) => li.textContent ?? '')
    }))
  const before = await waitFor('the page showing two nodes, not serving', async () => {
    const shown = await read()
    return shown.rows.length === 2 && shown.serverState === 'not serving' ? shown : undefined
  })
  assert.equal(before.cells.length, 0, 'no layer map without a plan')

  // A third agent joins: the open page must follow without a reload.
  late.start()
  const view = await waitFor(
    'the cluster serving over three agents',
    () => {
      const v = worker.view()
      return v?.plan?.server.state === 'ready' && v.nodes.length === 3 ? v : undefined
    },
    { timeoutMs: 90_000 }
  )
  const shown = await waitFor(
    'the page showing the serving cluster',
    async () => {
      const s = await read()
      // events arrive on their own poll, up to a couple of seconds after the state
      return s.serverState === 'ready' && s.rows.length === 3 && s.events.some((e) => /plan \d+ \(term \d+\)/.test(e)) ? s : undefined
    },
    { timeoutMs: 10_000 }
  )
  const truth = (await page.evaluate(async () => await (await fetch('/v1/cluster')).json())) as ClusterView
  assert.equal(truth.plan?.generation, view.plan?.generation, 'the page and the watcher saw the same plan')

  // Nodes and roles
  assert.deepEqual(new Set(shown.rows.map((r) => r.peerId)), new Set(truth.nodes.map((n) => n.peerId)))
  for (const row of shown.rows) {
    const expected =
      truth.coordinator?.peerId === row.peerId
        ? 'coordinator'
        : truth.nodes.find((n) => n.peerId === row.peerId)?.canCoordinate
          ? 'can coordinate'
          : 'worker'
    assert.equal(row.role, expected, `role of ${row.peerId}`)
  }
  // The layer map: every planned layer drawn on its node, the output layer too; the plan uses all three.
  const owners = new Map<string, string>()
  for (const n of truth.nodes) {
    if (n.layers !== null) for (let i = n.layers[0]; i <= n.layers[1]; i++) owners.set(String(i), n.peerId)
    if (n.output) owners.set('output', n.peerId)
  }
  assert.equal(new Set(owners.values()).size, 3, 'the plan spreads over the three nodes')
  assert.equal(shown.cells.length, owners.size, 'one cell per layer, and the output')
  for (const cell of shown.cells) assert.equal(cell.peerId, owners.get(cell.layer), `layer ${cell.layer}`)
  // The events tell the story: joins, the election, a plan.
  const story = shown.events.join('\n')
  assert.match(story, /joined/)
  assert.match(story, /coordinates \(term \d+\)/)
  assert.match(story, /plan \d+ \(term \d+\)/)

  const out = join(ROOT, 'test-output')
  mkdirSync(out, { recursive: true })
  await page.screenshot({ path: join(out, 'dashboard.png'), fullPage: true })
})
