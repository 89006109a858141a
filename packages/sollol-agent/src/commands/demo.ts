/**
 * `sollol-agent demo`: the whole product on one machine in a minute. Generates a test model, starts three
 * real agents (separate processes, each with its own rpc-server, ports and data dir) that form a cluster
 * on loopback, waits until it serves, prints the status, the layer map and one completion asked of an
 * agent that is not the coordinator, and stops everything on Ctrl-C (or at once with --exit-after-ready).
 *
 * The demo must never show itself on the user's LAN nor join a real cluster there: its cluster name is its
 * own (`demo-<random>`), mDNS is off, the mesh, the rpc-servers, llama-server and the APIs listen on
 * 127.0.0.1 only, and the agents find each other through --bootstrap to the first one. It also runs the
 * way we advise on a LAN: a fresh cluster key (closed mesh) and a token on the OpenAI API.
 */
import { randomBytes } from 'node:crypto'
import { createWriteStream, existsSync, mkdirSync, writeFileSync, type WriteStream } from 'node:fs'
import { join } from 'node:path'
import type { Command } from 'commander'
import { freePort, spawnChild, stopChild, type Child, type Logger } from '@sollol/llama-cpp'
import type { ClusterView } from '@sollol/core'
import { SPLIT_TEST_MODEL, writeTestModel } from '@sollol/gguf'
import { generateClusterKey } from '@sollol/mesh'
import { defaultDataDir } from '../config.js'
import { InterruptedError, UsageError } from '../errors.js'
import { integer } from '../options.js'
import { addBinaryOptions, binariesFromFlags, type BinaryFlags } from './setup.js'
import { formatLayerMap, formatStatus } from './status.js'
import { PACKAGE_ROOT } from '../version.js'

const CLI = join(PACKAGE_ROOT, 'bin', 'sollol-agent.js')
const AGENTS = 3
/** With SPLIT_TEST_MODEL (16 layers of 2.5 MiB), 32 MiB per agent (~13 MiB compute headroom) needs all three. */
const OFFER = '32MiB'

interface DemoFlags extends BinaryFlags {
  dir: string
  exitAfterReady: boolean
  timeout: number
  json?: boolean
}

interface DemoAgent {
  readonly name: string
  readonly apiPort: number
  readonly logFile: string
  readonly child: Child
  readonly log: WriteStream
  readonly tail: string[]
}

async function fetchView(apiPort: number): Promise<ClusterView | undefined> {
  try {
    const response = await fetch(`http://127.0.0.1:${apiPort}/v1/cluster`, { signal: AbortSignal.timeout(2000) })
    return response.status === 200 ? ((await response.json()) as ClusterView) : undefined
  } catch {
    return undefined
  }
}

function startAgent(index: number, dir: string, args: readonly string[], apiPort: number): DemoAgent {
  const name = `agent-${index + 1}`
  const logFile = join(dir, `${name}.log`)
  const log = createWriteStream(logFile, { flags: 'w' })
  const tail: string[] = []
  const child = spawnChild(process.execPath, [CLI, 'start', ...args], (line) => {
    log.write(line + '\n')
    tail.push(line)
    if (tail.length > 20) tail.shift()
  })
  return { name, apiPort, logFile, child, log, tail }
}

export function registerDemo(program: Command, getLog: () => Logger): void {
  addBinaryOptions(program.command('demo'))
    .description('try it on one machine: a three-agent cluster on loopback serving a generated test model')
    .option('--dir <dir>', 'where the demo keeps its model, data dirs and agent logs', join(defaultDataDir(), 'demo'))
    .option('--exit-after-ready', 'stop once the cluster has served one completion', false)
    .option('--timeout <seconds>', 'give up when the cluster does not serve within this time', integer('--timeout', 10, 3600), 300)
    .option('--json', 'print a JSON summary (time to ready, the state, the completion) instead of text')
    .action(async (flags: DemoFlags) => {
      const log = getLog()
      const say = (text: string): void => {
        if (flags.json !== true) process.stdout.write(text + '\n')
      }
      const binaries = await binariesFromFlags(flags, log, true)
      mkdirSync(flags.dir, { recursive: true })
      const model = join(flags.dir, 'demo-model.gguf')
      if (!existsSync(model)) writeTestModel(model, SPLIT_TEST_MODEL)
      const cluster = `demo-${randomBytes(3).toString('hex')}`
      const keyFile = join(flags.dir, 'cluster.key')
      writeFileSync(keyFile, generateClusterKey(), { mode: 0o600 })
      const apiToken = `demo-${randomBytes(12).toString('hex')}`
      const ports = []
      for (let i = 0; i < AGENTS; i++) {
        ports.push({ p2p: await freePort(), api: await freePort(), rpc: await freePort(), server: await freePort() })
      }
      const first = ports[0]
      if (first === undefined) throw new UsageError('no ports')
      say(`sollol-agent demo: ${AGENTS} agents on 127.0.0.1, cluster ${cluster} (mDNS off: nothing leaves this machine)`)
      say(`model ${model}; agent logs in ${flags.dir}`)
      const started = Date.now()
      const agents = ports.map((p, i) =>
        startAgent(
          i,
          flags.dir,
          [
            '--cluster',
            cluster,
            '--cluster-key',
            keyFile,
            '--api-token',
            apiToken,
            '--data-dir',
            join(flags.dir, `agent-${i + 1}`),
            '--no-mdns',
            '--no-setup',
            '--rpc-server-bin',
            binaries.rpcServer,
            '--llama-server-bin',
            binaries.llamaServer,
            '--p2p-host',
            '127.0.0.1',
            '--p2p-port',
            String(p.p2p),
            '--api-port',
            String(p.api),
            '--rpc-host',
            '127.0.0.1',
            '--rpc-port',
            String(p.rpc),
            // loopback only: open is as closed as it gets, and skips the gate in front of each rpc-server
            '--rpc-access',
            'open',
            '--server-port',
            String(p.server),
            '--rpc-threads',
            '1',
            '--ctx-size',
            '512',
            '--max-memory',
            OFFER,
            '--log-level',
            'info',
            ...(i === 0 ? ['--model', model] : ['--bootstrap', `/ip4/127.0.0.1/tcp/${first.p2p}`])
          ],
          p.api
        )
      )
      const stopAll = async (): Promise<void> => {
        await Promise.all(agents.map(async (a) => await stopChild(a.child, 10_000)))
        for (const a of agents) a.log.end()
      }
      let interrupted = false
      const onSignal = (): void => {
        interrupted = true
      }
      process.on('SIGINT', onSignal)
      process.on('SIGTERM', onSignal)
      try {
        // Wait until the cluster serves, telling what happens meanwhile.
        let lastLine = ''
        let view: ClusterView | undefined
        for (;;) {
          if (interrupted) throw new InterruptedError('interrupted before the cluster was ready')
          const dead = agents.find((a) => a.child.exitCode !== null)
          if (dead !== undefined)
            throw new Error(`${dead.name} exited (code ${String(dead.child.exitCode)}); its last lines:\n${dead.tail.join('\n')}`)
          if (Date.now() - started > flags.timeout * 1000)
            throw new Error(`the demo cluster did not serve within ${flags.timeout} s; see the logs in ${flags.dir}`)
          view = await fetchView(first.api)
          const line =
            view === undefined
              ? 'starting the agents (the first start measures each rpc-server once)'
              : view.plan === null
                ? `${view.nodes.length}/${AGENTS} agents in the mesh${view.coordinator !== null ? `, coordinator elected (term ${view.coordinator.term})` : ''}`
                : `${view.nodes.length}/${AGENTS} agents, llama-server ${view.plan.server.state}${view.plan.server.detail !== null ? ` (${view.plan.server.detail.replace(/, \d+ s$/, '')})` : ''}`
          if (line !== lastLine) say(`  ${((Date.now() - started) / 1000).toFixed(1).padStart(5)} s  ${line}`)
          lastLine = line
          if (view?.plan?.server.state === 'ready' && view.nodes.length === AGENTS) break
          await new Promise((resolve) => setTimeout(resolve, 250))
        }
        const readyMs = Date.now() - started
        // One completion, asked of the last agent: it is not the coordinator, so it goes through the mesh.
        const asked = ports[AGENTS - 1] ?? first
        const t0 = Date.now()
        const response = await fetch(`http://127.0.0.1:${asked.api}/v1/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${apiToken}` },
          body: JSON.stringify({ model: 'demo', prompt: 'Once upon a time', max_tokens: 16, temperature: 0 }),
          signal: AbortSignal.timeout(60_000)
        })
        const body = (await response.json()) as { choices?: Array<{ text?: string }>; usage?: unknown; error?: { message?: string } }
        if (response.status !== 200) throw new Error(`the completion failed: ${response.status} ${body.error?.message ?? ''}`)
        const completion = { text: body.choices?.[0]?.text ?? '', ms: Date.now() - t0, via: `http://127.0.0.1:${asked.api}/v1` }
        const finalView = (await fetchView(first.api)) ?? view
        if (flags.json === true) {
          process.stdout.write(
            JSON.stringify({ cluster, readyMs, completion, apiPorts: ports.map((p) => p.api), apiToken, view: finalView }, null, 2) + '\n'
          )
        } else {
          say(`\nready in ${(readyMs / 1000).toFixed(1)} s\n`)
          say(formatStatus(finalView))
          say(formatLayerMap(finalView))
          say(
            `completion through ${completion.via} (not the coordinator), ${completion.ms} ms (the test model is random weights: expect gibberish):`
          )
          say(`  "Once upon a time${completion.text.replace(/\s+/g, ' ')}"\n`)
          say(`dashboard:   http://127.0.0.1:${first.api}/`)
          say(`OpenAI API:  http://127.0.0.1:${asked.api}/v1  (any agent: ${ports.map((p) => p.api).join(', ')}), token ${apiToken}`)
          say(`status:      sollol-agent status --api http://127.0.0.1:${first.api}`)
        }
        if (!flags.exitAfterReady) {
          say('\nCtrl-C stops the demo')
          while (!interrupted && agents.every((a) => a.child.exitCode === null)) await new Promise((resolve) => setTimeout(resolve, 200))
        }
      } finally {
        say('stopping the demo agents')
        await stopAll()
        process.off('SIGINT', onSignal)
        process.off('SIGTERM', onSignal)
      }
    })
}
