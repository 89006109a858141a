#!/usr/bin/env node
// By-hand check of a real cluster on this machine (root): N test hosts in network namespaces, real agents
// through the CLI (the first two hold a generated model), then `status` from every host, `plan` on the
// coordinator's host and a chat completion against the server URL. Nothing leaves the test network.
//   node scripts/netns-cluster.mjs [--hosts 4] [--keep]    (after `npm test` or `npx tsc -b`)
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { SPLIT_TEST_MODEL, writeTestModel } from '@sollol/gguf'
import { TestNetwork } from '../test/dist/helpers/netns.js'
import { CLI, TestAgent, completeFrom } from '../test/dist/helpers/agents.js'
import { waitFor } from '../test/dist/helpers/wait.js'

const argv = process.argv.slice(2)
const hosts = Number(argv[argv.indexOf('--hosts') + 1] ?? 4) || 4
const dir = mkdtempSync(join(tmpdir(), 'sollol-try-'))
const model = join(dir, 'model.gguf')
writeTestModel(model, SPLIT_TEST_MODEL)
const network = TestNetwork.create(Array.from({ length: hosts }, () => ({})))
const agents = network.hosts.map(
  (host, i) =>
    new TestAgent(host, dir, [
      '--rpc-threads',
      '1',
      '--ctx-size',
      '512',
      '--max-memory',
      i < 2 ? '34MiB' : '56MiB',
      ...(i < 2 ? ['--model', model] : [])
    ])
)
const started = Date.now()
try {
  for (const a of agents) a.start()
  const view = await waitFor(
    'a serving plan',
    () => {
      const v = agents[0].view()
      return v?.plan?.server.state === 'ready' && v.nodes.length === hosts ? v : undefined
    },
    { timeoutMs: 90_000 }
  )
  console.log(`serving ${((Date.now() - started) / 1000).toFixed(1)} s after launch\n`)
  for (const a of agents) {
    const r = await a.host.run(process.execPath, [CLI, 'status'])
    console.log(`$ ip netns exec ${a.host.name} sollol-agent status\n${r.stdout}`)
  }
  const coordinator = agents.find((a) => a.view()?.self === view.coordinator.peerId)
  const plan = await coordinator.host.run(process.execPath, [CLI, 'plan'])
  console.log(`$ ip netns exec ${coordinator.host.name} sollol-agent plan\n${plan.stdout}`)
  const completion = await completeFrom(agents[hosts - 1].host, dir, view.plan.server.url)
  console.log(`$ curl ${view.plan.server.url}/v1/chat/completions (from ${agents[hosts - 1].host.name})\n${completion.output}\n`)
  if (argv.includes('--keep')) {
    console.log(`cluster kept running; logs in ${dir}; Ctrl-C stops it`)
    await new Promise((resolve) => process.once('SIGINT', resolve))
  }
} finally {
  await Promise.all(agents.map((a) => a.stop()))
  network.destroy()
  if (!argv.includes('--keep')) rmSync(dir, { recursive: true, force: true })
}
