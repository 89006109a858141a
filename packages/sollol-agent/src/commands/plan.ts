import type { Command } from 'commander'
import { readModelInfo } from '@sollol/gguf'
import {
  modelShapeOf,
  planDevicesOf,
  planningSpeeds,
  servesAccelerator,
  shapedPricing,
  DEFAULT_KV_CACHE_TYPES,
  hopSeconds,
  KV_CACHE_TYPES,
  kvBytesPerToken,
  kvBytesPerTokenByLayer,
  plan as makePlan,
  type ClusterView,
  type KvCacheType,
  type KvCacheTypes,
  type Plan
} from '@sollol/core'
import { formatBytes, integer, oneOf } from '../options.js'
import { addClusterOptions } from './start.js'
import { formatTable } from './status.js'
import { modelRef } from '../capacity.js'
import { resolveModelSpec } from '../model-store.js'

interface PlanFlags {
  model?: string
  json?: boolean
  ctxSize?: number
  cacheTypeK: KvCacheType
  cacheTypeV: KvCacheType
  apiPort: number
}

async function getJson<T>(url: string): Promise<{ status: number; body: T }> {
  const response = await fetch(url, { signal: AbortSignal.timeout(10_000) })
  return { status: response.status, body: (await response.json()) as T }
}

/** Plans locally from a model file and the cluster's announcements (what the coordinator would do). */
export async function planFromFile(
  file: string,
  view: ClusterView,
  contextSize: number | undefined,
  cacheTypes: KvCacheTypes = DEFAULT_KV_CACHE_TYPES
): Promise<Plan> {
  const [info, ref] = await Promise.all([readModelInfo(file), modelRef(file)])
  const usable = view.nodes.filter((n) => n.rpc.state === 'ready' || n.rpc.state === 'external')
  // the coordinator's pricing basis: in the model's shape when every node that can hold a layer measured in it
  const pricedWith = shapedPricing(modelShapeOf(info), usable)
  return makePlan({
    // the KV cache in its type, as the coordinator plans it
    model: {
      ...info,
      name: ref.name,
      id: ref.id,
      kvBytesPerTokenPerLayer: kvBytesPerToken(info, cacheTypes),
      kvBytesPerTokenByLayer: kvBytesPerTokenByLayer(info, cacheTypes)
    },
    nodes: usable.map((n) => {
      const { speed, devices } = planningSpeeds(n, pricedWith)
      return {
        peerId: n.peerId,
        hostname: n.hostname,
        rpc: `${n.rpc.host}:${n.rpc.port}`,
        memoryBudget: n.memoryBudget,
        secondsPerGiB: speed?.secondsPerGiB,
        ...(speed?.fixedSecondsPerToken !== undefined ? { fixedSecondsPerToken: speed.fixedSecondsPerToken } : {}),
        ...(speed?.promptSecondsPerGiB !== undefined ? { promptSecondsPerGiB: speed.promptSecondsPerGiB } : {}),
        // the coordinator's own cost model; RTTs are its measurements, here the LAN default
        hopSeconds: hopSeconds(n.peerId === view.self, undefined),
        isHost: n.peerId === view.self,
        accelerator: servesAccelerator(n.devices),
        devices: planDevicesOf(devices)
      }
    }),
    ...(contextSize !== undefined ? { contextSize } : {})
  })
}

export function formatPlan(p: Plan): string {
  const rows = [['ORDER', 'NODE', 'RPC ENDPOINT (DEVICE)', 'LAYERS', 'COUNT', 'MEMORY', 'OFFERED', 'SPEED', 'WHY']]
  p.nodes.forEach((n, i) => {
    rows.push([
      String(i),
      `${n.hostname ?? ''} …${n.peerId.slice(-6)}`.trim(),
      n.device === null ? n.rpc : `${n.rpc} ${n.device}`,
      `${n.layers === null ? '-' : `${n.layers[0]}-${n.layers[1]}`}${n.output ? '+out' : ''}`,
      String(n.layerCount),
      formatBytes(n.memory.total),
      formatBytes(n.memory.budget),
      `${n.secondsPerGiB.toFixed(3)} s/GiB${n.speedMeasured ? '' : '?'}`,
      n.why
    ])
  })
  const lines = [
    `plan for ${p.model.name} (context ${p.contextSize} tokens): ${p.nodes.length} node(s), predicted ${p.predictedTokensPerSecond.toFixed(1)} tok/s single-stream${p.predictedPromptTokensPerSecond !== null ? `, prompt ${p.predictedPromptTokensPerSecond.toFixed(0)} tok/s` : ''}`,
    formatTable(rows)
  ]
  for (const u of p.unused)
    lines.push(`unused: ${u.hostname ?? ''} …${u.peerId.slice(-6)}${u.device !== undefined ? ` ${u.device}` : ''}: ${u.why}`)
  lines.push(
    `llama-server --rpc ${p.rpc.join(',')} --n-gpu-layers all --tensor-split ${p.tensorSplit.map((x) => Math.round(x * 1e6) / 1e6).join(',')} --ctx-size ${p.contextSize}`
  )
  return lines.join('\n') + '\n'
}

export function registerPlan(program: Command): void {
  addClusterOptions(program.command('plan'))
    .description('print the layer plan for the current cluster without starting anything: per node its layers, memory, speed and why')
    .option('--model <file>', 'plan this GGUF file or ollama:NAME[:TAG] (default: the model the local agent holds)')
    .option('--json', 'print JSON')
    .option('--ctx-size <tokens>', 'context size to plan for (with --model)', integer('--ctx-size', 16, 10_000_000))
    .option('--cache-type-k <type>', 'KV cache type of keys to plan for (with --model)', oneOf('--cache-type-k', KV_CACHE_TYPES), 'f16')
    .option('--cache-type-v <type>', 'KV cache type of values to plan for (with --model)', oneOf('--cache-type-v', KV_CACHE_TYPES), 'f16')
    .action(async (flags: PlanFlags) => {
      const api = `http://127.0.0.1:${flags.apiPort}`
      let result: Plan
      if (flags.model !== undefined) {
        const { body: view } = await getJson<ClusterView>(`${api}/v1/cluster`)
        result = await planFromFile(await resolveModelSpec(flags.model), view, flags.ctxSize, { k: flags.cacheTypeK, v: flags.cacheTypeV })
      } else {
        const { status, body } = await getJson<Plan & { error?: string }>(`${api}/v1/plan`)
        if (status !== 200) throw new Error(body.error ?? `the agent answered ${status}`)
        result = body
      }
      process.stdout.write(flags.json === true ? JSON.stringify(result, null, 2) + '\n' : formatPlan(result))
    })
}
