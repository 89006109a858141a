import type { Command } from 'commander'
import { WIRE_RANGE, type ClusterName, type ClusterView, type NodeView } from '@sollol/core'
import { discoverAndFetchState, fetchClusterState, readClusterKey } from '@sollol/mesh'
import { formatBytes, integer, multiaddrOption } from '../options.js'
import { addClusterOptions } from './start.js'
import { ExitCode, SollolError } from '@sollol/core'

interface StatusFlags {
  clusterKey?: string
  json?: boolean
  watch?: number
  peer?: string[]
  api?: string
  cluster: ClusterName
  apiPort: number
}

export class NoAgentError extends SollolError {
  constructor(message: string) {
    super(message, ExitCode.FAILURE)
  }
}

async function fromApi(url: string): Promise<ClusterView> {
  const response = await fetch(new URL('/v1/cluster', url), { signal: AbortSignal.timeout(5000) })
  if (response.status !== 200) throw new NoAgentError(`Expected ${url} to answer /v1/cluster with 200, got ${response.status}`)
  return (await response.json()) as ClusterView
}

/** The state from: a given API, a given peer, the local agent, or any agent of the cluster found by mDNS. */
async function clusterState(flags: StatusFlags, clusterExplicit: boolean): Promise<ClusterView> {
  if (flags.api !== undefined) return await fromApi(flags.api)
  const peer = flags.peer?.[0]
  const key = flags.clusterKey !== undefined ? await readClusterKey(flags.clusterKey) : undefined
  if (peer !== undefined) return await fetchClusterState(peer, flags.cluster, 5000, key)
  const local = `http://127.0.0.1:${flags.apiPort}`
  try {
    const view = await fromApi(local)
    // The local agent answers for its own cluster; asked for another one by name, look on the LAN.
    if (view.cluster === flags.cluster || !clusterExplicit) return view
  } catch (err) {
    const code = (err as { cause?: { code?: string } }).cause?.code
    if (!(err instanceof TypeError) || (code !== 'ECONNREFUSED' && code !== undefined)) throw err
  }
  const found = await discoverAndFetchState(flags.cluster, 4000, key)
  if (found === undefined) {
    throw new NoAgentError(
      `No agent answered: none runs here (${local}) and mDNS found no agent of cluster \`${flags.cluster}\` within 4 s; try --peer <multiaddr> or --api <url>`
    )
  }
  return found
}

const shortId = (peerId: string): string => `…${peerId.slice(-6)}`

/** The rpc-server's devices with what each offers (`Vulkan0 1.8 GiB, CPU 17 GiB`); older agents: kind and size. */
export function devicesText(node: Pick<NodeView, 'devices'>): string {
  return (
    node.devices
      .map((d) =>
        d.budget !== undefined && d.rpcIndex !== undefined
          ? `${d.name} ${formatBytes(d.budget)}`
          : `${d.kind} ${formatBytes(d.memoryTotal)}`
      )
      .join(', ') || '-'
  )
}

function serverDetail(plan: NonNullable<ClusterView['plan']>): string {
  const parts = [
    plan.server.detail,
    plan.server.state === 'loading' && typeof plan.server.progress === 'number' ? `${Math.round(plan.server.progress * 100)} %` : null
  ]
  const text = parts.filter((p) => p !== null).join(', ')
  return text === '' ? '' : ` (${text})`
}

/** A fixed-width table, columns sized to their content. Pure. */
export function formatTable(rows: readonly string[][]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? []
  return rows
    .map((r) =>
      r
        .map((cell, i) => cell.padEnd(widths[i] ?? 0))
        .join('  ')
        .trimEnd()
    )
    .join('\n')
}

export function layersText(node: Pick<NodeView, 'layers' | 'output' | 'deviceLayers'>): string {
  if (node.deviceLayers !== undefined && node.deviceLayers.length > 0) {
    return node.deviceLayers.map((d) => `${d.device} ${layersText({ layers: d.layers, output: d.output })}`).join(', ')
  }
  const range = node.layers === null ? '' : node.layers[0] === node.layers[1] ? `${node.layers[0]}` : `${node.layers[0]}-${node.layers[1]}`
  if (range === '' && !node.output) return '-'
  return node.output ? `${range}${range === '' ? '' : '+'}out` : range
}

/**
 * The layer map as text: one letter per layer (the node holding it), `|`, then the output layer's, and a
 * legend. Pure; empty when there is no plan.
 */
export function formatLayerMap(view: ClusterView): string {
  const plan = view.plan
  if (plan === null) return ''
  // one letter per assignment: a node whose devices are planned apart has one per device
  const letter = (i: number): string => String.fromCharCode(65 + (i % 26))
  const owner: string[] = []
  let output = '.'
  plan.assignments.forEach((a, i) => {
    if (a.layers !== null) for (let l = a.layers[0]; l <= a.layers[1]; l++) owner[l] = letter(i)
    if (a.output) output = letter(i)
  })
  const bar = Array.from({ length: owner.length }, (_, l) => owner[l] ?? '.').join('')
  const legend = plan.assignments.map((a, i) => {
    const node = view.nodes.find((n) => n.peerId === a.peerId)
    const device = typeof a.device === 'string' ? ` ${a.device}` : ''
    return `  ${letter(i)} ${node?.hostname ?? ''} ${shortId(a.peerId)}${device}  layers ${layersText(a)}, ${formatBytes(a.memoryBytes)}`
  })
  return [`layer map (${owner.length} layers | output): ${bar}|${output}`, ...legend].join('\n') + '\n'
}

/** The node's measured speed: in the model's shape when it has one (the shape named), else the generic one. */
function speedText(node: ClusterView['nodes'][number]): string {
  const shaped = node.modelSpeed ?? null
  const speed = shaped?.speed ?? node.speed
  if (speed === null || speed === undefined) return '-'
  const fixed = speed.fixedSecondsPerToken ? ` +${(speed.fixedSecondsPerToken * 1000).toFixed(1)} ms` : ''
  return `${speed.secondsPerGiB.toFixed(3)} s/GiB${fixed}${shaped !== null ? ` (${shaped.shape})` : ''}`
}

export function formatStatus(view: ClusterView): string {
  const rows = [['NODE', 'PEER', 'STATUS', 'RPC ENDPOINT', 'RPC', 'DEVICES', 'OFFERED', 'SPEED', 'LAYERS', 'ROLE']]
  for (const node of view.nodes) {
    const role =
      node.status === 'static'
        ? 'static rpc-server (no agent, unprotected)'
        : view.coordinator?.peerId === node.peerId
          ? 'coordinator'
          : node.canCoordinate
            ? 'can coordinate'
            : 'worker'
    rows.push([
      node.hostname,
      shortId(node.peerId),
      node.status,
      `${node.rpc.host}:${node.rpc.port}`,
      `${node.rpc.state}${node.rpc.protocol !== null ? ` v${node.rpc.protocol}` : ''}`,
      devicesText(node),
      formatBytes(node.memoryBudget),
      speedText(node),
      layersText(node),
      role
    ])
  }
  const lines = [
    `cluster ${view.cluster}: ${view.nodes.length} node${view.nodes.length === 1 ? '' : 's'}, answered by ${shortId(view.self)}`
  ]
  if (view.discovery.mdns !== 'ok') lines.push(`mDNS ${view.discovery.mdns}: ${view.discovery.reason ?? ''}`)
  if (view.discovery.closed === false) lines.push('cluster OPEN: no cluster key, any machine on the LAN can join (sollol-agent keygen)')
  if (view.coordinator !== null) lines.push(`coordinator ${shortId(view.coordinator.peerId)}, term ${view.coordinator.term}`)
  const plan = view.plan
  if (plan !== null) {
    const measured = typeof plan.measuredTokensPerSecond === 'number' ? `, measured ${plan.measuredTokensPerSecond.toFixed(0)} tok/s` : ''
    const prompt =
      typeof plan.predictedPromptTokensPerSecond === 'number'
        ? `, prompt ${plan.predictedPromptTokensPerSecond.toFixed(0)} tok/s predicted`
        : ''
    const basis = typeof plan.pricedWith === 'string' ? ` (priced in the model's shape, ${plan.pricedWith})` : ''
    const tps =
      plan.predictedTokensPerSecond !== null
        ? `, predicted ${plan.predictedTokensPerSecond.toFixed(0)} tok/s${measured}${prompt}${basis}`
        : ''
    lines.push(
      `model ${plan.model.name}: server ${plan.server.url} ${plan.server.state}${serverDetail(plan)}, plan generation ${plan.generation}${tps}`
    )
    if (plan.server.auth === 'none') lines.push('the OpenAI API has no token: anyone on the LAN can use it (--api-token)')
    if (plan.mismatch !== null) lines.push(`split differs from the plan: ${plan.mismatch}`)
    const lan = view.weightsOverLan
    if (lan !== undefined && lan !== null) {
      lines.push(
        `weights sent over the LAN for this load: ${formatBytes(lan.bytes)}${lan.done ? '' : ' so far'}` +
          (lan.tensorsFromCache > 0 ? ` (${lan.tensorsFromCache} tensors came from the rpc-servers' caches)` : '')
      )
    }
    for (const x of plan.excluded) {
      const node = view.nodes.find((n) => n.peerId === x.peerId)
      lines.push(`left out: ${node?.hostname ?? ''} ${shortId(x.peerId)}: ${x.reason}`)
    }
    for (const x of plan.budgetCuts ?? []) {
      const node = view.nodes.find((n) => n.peerId === x.peerId)
      lines.push(`${x.budget === 0 ? 'left out' : 'planned smaller'}: ${node?.hostname ?? ''} ${shortId(x.peerId)}: ${x.reason}`)
    }
  }
  for (const p of view.incompatible ?? []) {
    lines.push(
      `incompatible: ${p.hostname} ${shortId(p.peerId)} (sollol-agent ${p.agentVersion}) speaks announcement versions ${p.wire.min}-${p.wire.max}, ` +
        `this one ${WIRE_RANGE.min}-${WIRE_RANGE.max}: upgrade one side (it is left out of the cluster)`
    )
  }
  if (view.problem !== undefined && view.problem !== null) lines.push(`not serving: ${view.problem}`)
  return `${lines.join('\n')}\n${formatTable(rows)}\n`
}

export function registerStatus(program: Command): void {
  addClusterOptions(program.command('status'))
    .description('show the cluster: asks the local agent, else any agent of the cluster found on the LAN')
    .option('--json', 'print the state JSON')
    .option('--peer <multiaddr>', 'ask this agent (a multiaddr with /p2p/<peer id>)', multiaddrOption('--peer'))
    .option('--api <url>', 'ask the agent whose HTTP API is at this URL, e.g. http://127.0.0.1:7491')
    .option(
      '--watch [seconds]',
      'refresh every N seconds (default 2) until Ctrl-C; with --json, one JSON line per refresh',
      (value: string) => integer('--watch', 1, 3600)(value)
    )
    .action(async (flags: StatusFlags, command: Command) => {
      const source = command.getOptionValueSource('cluster')
      const explicit = source !== undefined && source !== 'default'
      const render = (view: ClusterView): string =>
        flags.json === true
          ? JSON.stringify(view, null, flags.watch === undefined ? 2 : 0) + '\n'
          : formatStatus(view) + formatLayerMap(view)
      if (flags.watch === undefined) {
        process.stdout.write(render(await clusterState(flags, explicit)))
        return
      }
      const seconds = typeof flags.watch === 'number' ? flags.watch : 2
      let stop = false
      process.once('SIGINT', () => {
        stop = true
      })
      const clear = process.stdout.isTTY && flags.json !== true
      while (!stop) {
        let text: string
        try {
          text = render(await clusterState(flags, explicit))
        } catch (err) {
          // The agent may be restarting: say so and keep watching.
          text = `${new Date().toLocaleTimeString()}: ${(err as Error).message}\n`
        }
        process.stdout.write(
          clear ? `\x1b[2J\x1b[H${new Date().toLocaleTimeString()}  (every ${seconds} s, Ctrl-C to stop)\n${text}` : text
        )
        const until = Date.now() + seconds * 1000
        while (!stop && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 100))
      }
    })
}
