/**
 * Which layers go to which node. Pure, table-tested.
 *
 * Cost model (single-stream decode): time per token = sum over used nodes of (their layers x their time
 * per layer) + a cost per network hop (each used rpc-server is at least one round trip per token) + the
 * output head where it runs and, when that is not llama-server's machine, its logits sent back.
 * Time per layer = the layer's GiB x the node's measured seconds per GiB (see calibration). With costs
 * linear in layers, the fastest nodes are filled first; which nodes to use at all is searched (every
 * subset up to 10 nodes, speed-ordered prefixes beyond), so a slow node is used only when the model
 * does not fit without it, and a model that fits on one node runs there unless splitting truly pays.
 *
 * Memory per node: its layers' weights + their KV cache at the context size + a compute headroom,
 * plus the output head on the last node and the input embeddings on the host (llama-server's machine).
 *
 * Devices: llama.cpp makes one RPC device per device of an rpc-server (`Vulkan0`, `CPU`...), each with its
 * own memory, speed and `--tensor-split` entry. The planner places layers on stages, one per (node, device);
 * a node without a device list is one stage. A server's devices keep the server's order (llama.cpp runs
 * them so), so a server's stages are contiguous in the layer order, and the output goes to the last stage,
 * which must be the last used device of its server (trailing devices get a zero share). Each used stage
 * costs a hop: every device is a graph split, a round trip per token.
 */
import { tensorSplitForLayerCounts } from './layer-split.js'
import { ExitCode, SollolError } from './errors.js'
import { LOCAL_HOP_SECONDS, logitsSeconds } from './cost-model.js'
import { DEFAULT_PARALLEL_SLOTS, kvCellsPerLayer, type SlidingWindow } from './kv-cache.js'

const GIB = 2 ** 30

export interface PlanModel {
  readonly name: string
  readonly id: string
  readonly layerWeightBytes: readonly number[]
  readonly embeddingBytes: number
  readonly outputBytes: number
  readonly kvBytesPerTokenPerLayer: number
  readonly embeddingLength: number
  /** Per layer when the model's KV heads differ by layer (kvBytesPerTokenByLayer); else kvBytesPerTokenPerLayer for all. */
  readonly kvBytesPerTokenByLayer?: readonly number[] | undefined
  /** Sliding-window layers keep a smaller KV cache (kv-cache.ts); absent or null: every layer the whole context. */
  readonly slidingWindow?: SlidingWindow | null
  /** Attention heads (query). Not in the compute headroom: with flash attention the buffers do not grow with them. */
  readonly headCount: number
  /** The widest feed-forward activation per token (model-info's feedForwardWidth); undefined: 4 x embeddingLength. */
  readonly feedForwardWidth?: number | undefined
  readonly vocabSize: number
  readonly contextLength: number
}

/** One device of a node's rpc-server, as llama.cpp lists it there. */
export interface PlanDevice {
  /** As the rpc-server names it (`Vulkan0`, `CUDA0`, `CPU`). */
  readonly name: string
  readonly memoryBudget: number
  /** Measured; undefined = not measured (then assumed slower than every measured device). */
  readonly secondsPerGiB: number | undefined
  /** Measured beside it: what every token costs on it whatever it holds (cost-model.ts, fitTokenCost). */
  readonly fixedSecondsPerToken?: number | undefined
  /** Prompt processing: seconds per prompt token per GiB of layers (a calibration in the model's shape). */
  readonly promptSecondsPerGiB?: number | undefined
  /** Holds llama-server's own memory when the node is the host (the input embeddings): its CPU. */
  readonly hostMemory?: boolean
}

export interface PlanNode {
  readonly peerId: string
  readonly hostname?: string
  /** rpc-server endpoint `host:port`. */
  readonly rpc: string
  readonly memoryBudget: number
  /** Measured; undefined = not measured (then assumed slower than every measured node). */
  readonly secondsPerGiB: number | undefined
  /** Measured beside it: what every token costs on it whatever it holds (not the round trip). */
  readonly fixedSecondsPerToken?: number | undefined
  /** Prompt processing: seconds per prompt token per GiB of layers (a calibration in the model's shape). */
  readonly promptSecondsPerGiB?: number | undefined
  /** Per-token cost of using this node at all (round trips). */
  readonly hopSeconds: number
  /** Runs llama-server: keeps the input embeddings. */
  readonly isHost: boolean
  /** Planned as one device that is a GPU or another accelerator (its own fixed part is paid: planFixed). */
  readonly accelerator?: boolean | undefined
  /**
   * The rpc-server's devices in its order (llama.cpp's RPC device order). Absent: one device with the
   * node's budget and speed (`memoryBudget` and `secondsPerGiB` then describe it).
   */
  readonly devices?: readonly PlanDevice[] | undefined
}

export interface PlanInput {
  readonly model: PlanModel
  readonly nodes: readonly PlanNode[]
  /** Tokens of context (KV cache); default min(model's, 4096). */
  readonly contextSize?: number
  /** llama-server's parallel slots (sliding-window caches grow with them); default its auto, 4. */
  readonly parallel?: number
}

export interface NodeMemory {
  readonly weights: number
  readonly kv: number
  readonly output: number
  readonly embeddings: number
  readonly headroom: number
  readonly total: number
  readonly budget: number
}

export interface NodePlan {
  readonly peerId: string
  readonly hostname: string | undefined
  readonly rpc: string
  /** The device of the node's rpc-server (null: a node planned without a device list). */
  readonly device: string | null
  /** Its index among the rpc-server's devices (0 without a device list). */
  readonly deviceIndex: number
  readonly layerCount: number
  /** Inclusive range of repeating layers; null when none. */
  readonly layers: readonly [number, number] | null
  readonly output: boolean
  readonly memory: NodeMemory
  readonly secondsPerGiB: number
  readonly speedMeasured: boolean
  readonly secondsPerToken: number
  readonly why: string
}

export interface Plan {
  readonly model: { readonly name: string; readonly id: string }
  readonly contextSize: number
  /**
   * Used stages (node, device) in layer order: the nodes in `--rpc` order, a node's devices in its
   * rpc-server's order; the last one holds the output layer.
   */
  readonly nodes: readonly NodePlan[]
  /** Nodes not used at all, and devices of used nodes that hold nothing (`device` set). */
  readonly unused: ReadonlyArray<{
    readonly peerId: string
    readonly hostname: string | undefined
    readonly device?: string
    readonly why: string
  }>
  readonly rpc: readonly string[]
  /** One entry per RPC device of the `--rpc` servers, in llama.cpp's order (zero for a device left out). */
  readonly tensorSplit: readonly number[]
  readonly gpuLayers: 'all'
  readonly predictedSecondsPerToken: number
  readonly predictedTokensPerSecond: number
  /**
   * Prompt tokens a second (a long prompt, processed in batches: each device's share of the weights at its
   * measured prompt price, one after the other); null unless every used device's prompt price is known.
   */
  readonly predictedPromptTokensPerSecond: number | null
}

export class PlanError extends SollolError {
  constructor(
    message: string,
    readonly nodes: ReadonlyArray<{ peerId: string; requiredBytes: number; offeredBytes: number }>
  ) {
    super(message, ExitCode.FAILURE)
  }
}

const formatGiB = (bytes: number): string => `${(bytes / GIB).toFixed(bytes < GIB ? 3 : 1)} GiB`
const DEFAULT_CONTEXT = 4096
const UBATCH = 512

/**
 * Compute buffers llama.cpp allocates per device, with flash attention on (llama-server always runs with
 * it: llama-server.ts). Measured on CPU rpc-servers (docs/estimates.md: 256-1024 wide, ff 512-4096,
 * 8-16 heads, 256-4096 cells): a device's buffer is a micro-batch's activations, about 16 bytes per token
 * per unit of width (embedding + the widest feed-forward), plus the attention mask of the micro-batch
 * against every KV cell, 8 bytes per pair and one mask per kind of cache (a model with sliding-window layers
 * has two), independent of the head count. The logits (8 bytes per token per vocabulary entry) and 2 MiB
 * are a margin on top. Without flash attention the scores of every head would be materialized (3-5x more
 * at 4096 cells), which is why it is never turned off.
 */
export function computeHeadroomBytes(model: PlanModel, contextSize: number): number {
  const width = model.embeddingLength + (model.feedForwardWidth ?? 4 * model.embeddingLength)
  const activations = 16 * UBATCH * width
  const logits = 8 * UBATCH * model.vocabSize
  // a sliding-window cache as the coordinator runs llama-server (its automatic slots)
  const cells = kvCellsPerLayer(model.layerWeightBytes.length, contextSize, model.slidingWindow, DEFAULT_PARALLEL_SLOTS)
  const windowed = model.slidingWindow?.layers ?? []
  const maskCells = (cells.some((_, il) => windowed[il] !== true) ? contextSize : 0) + (cells.find((_, il) => windowed[il] === true) ?? 0)
  return activations + logits + 8 * UBATCH * maskCells + 2 * 2 ** 20
}

/** Memory a node needs besides its layers: compute headroom, the output head, the input embeddings on the host. */
function fixedNodeBytes(model: PlanModel, n: Pick<PlanNode, 'isHost'>, output: boolean, contextSize: number): number {
  return computeHeadroomBytes(model, contextSize) + (output ? model.outputBytes : 0) + (n.isHost ? model.embeddingBytes : 0)
}

/** Most layers a node can hold within its memory budget (the memory limit the planner and the benchmarks use). */
export function layerCapacity(
  model: PlanModel,
  n: Pick<PlanNode, 'isHost' | 'memoryBudget'>,
  output: boolean,
  contextSize: number
): number {
  const layerCount = model.layerWeightBytes.length
  const perLayer = Math.max(0, ...model.layerWeightBytes) + model.kvBytesPerTokenPerLayer * contextSize // the largest KV
  const free = n.memoryBudget - fixedNodeBytes(model, n, output, contextSize)
  return free <= 0 ? 0 : Math.min(layerCount, Math.floor(free / perLayer))
}

/** A place for layers: one device of one node's rpc-server. */
interface Stage {
  readonly node: PlanNode
  readonly device: string | null
  readonly index: number
  readonly memoryBudget: number
  readonly secondsPerGiB: number | undefined
  readonly fixedSeconds: number
  readonly promptSecondsPerGiB: number | undefined
  /** A GPU or another accelerator: its fixed part (kernel launches) is its own (planFixed). */
  readonly accelerator: boolean
  /** Keeps the input embeddings (the host's CPU). */
  readonly isHost: boolean
  /** The server's device count (for the tensor split's zero entries). */
  readonly deviceCount: number
}

/**
 * A device's fixed per-token cost as the calibration measured it, less the loopback round trip it included
 * (the plan prices each hop itself). What is left is mostly llama-server's own step (sampling, the batch,
 * the graph's non-layer part), which a cluster pays once however many devices it uses; what grows with
 * the layers (building and sending their graph) is in the per-byte price, since the two calibration models
 * differ only in layers. So a plan pays that part once (see `planFixed`): charged per stage, three CPU
 * nodes of the placement bench were priced 9 ms a token they never spent.
 */
function fixedPart(measured: number | undefined): number {
  return Math.max(0, (measured ?? 0) - LOCAL_HOP_SECONDS)
}

/** A node's stages in its rpc-server's order. Pure. */
function stagesOf(n: PlanNode): Stage[] {
  if (n.devices === undefined || n.devices.length === 0) {
    return [
      {
        node: n,
        device: null,
        index: 0,
        memoryBudget: n.memoryBudget,
        secondsPerGiB: n.secondsPerGiB,
        fixedSeconds: fixedPart(n.fixedSecondsPerToken),
        promptSecondsPerGiB: n.promptSecondsPerGiB,
        accelerator: n.accelerator === true,
        isHost: n.isHost,
        deviceCount: 1
      }
    ]
  }
  const devices = n.devices
  // the embeddings live in llama-server's process: the device marked as host memory, else a CPU, else the last
  const marked = devices.findIndex((d) => d.hostMemory === true)
  const cpu = devices.findIndex((d) => /^cpu/i.test(d.name))
  const embeddingsAt = marked >= 0 ? marked : cpu >= 0 ? cpu : devices.length - 1
  return devices.map((d, index) => ({
    node: n,
    device: d.name,
    index,
    memoryBudget: d.memoryBudget,
    secondsPerGiB: d.secondsPerGiB,
    fixedSeconds: fixedPart(d.fixedSecondsPerToken),
    promptSecondsPerGiB: d.promptSecondsPerGiB,
    accelerator: d.hostMemory !== true && !/^cpu/i.test(d.name),
    isHost: n.isHost && index === embeddingsAt,
    deviceCount: devices.length
  }))
}

interface Layout {
  readonly order: readonly Stage[]
  readonly counts: readonly number[]
  readonly cost: number
}

const stageName = (s: Stage): string => `${s.node.hostname ?? s.node.peerId}${s.device === null ? '' : ` ${s.device}`}`

export function plan(input: PlanInput): Plan {
  const { model } = input
  const layerCount = model.layerWeightBytes.length
  const contextSize = input.contextSize ?? Math.min(model.contextLength, DEFAULT_CONTEXT)
  const kvPerLayer = model.kvBytesPerTokenPerLayer * contextSize // a full-context layer's cache
  // each layer's KV cache: a sliding-window layer's is smaller
  const kvOf = kvCellsPerLayer(layerCount, contextSize, model.slidingWindow, input.parallel).map(
    (cells, il) => cells * (model.kvBytesPerTokenByLayer?.[il] ?? model.kvBytesPerTokenPerLayer)
  )
  const kvBytes = (first: number, count: number): number => kvOf.slice(first, first + count).reduce((a, b) => a + b, 0)
  const maxLayerBytes = Math.max(0, ...model.layerWeightBytes)
  const headroom = computeHeadroomBytes(model, contextSize)
  if (input.nodes.length === 0) throw new PlanError('Cannot plan: no node with a usable rpc-server', [])

  const stages = input.nodes.flatMap(stagesOf)
  const measured = stages.map((s) => s.secondsPerGiB).filter((s): s is number => s !== undefined)
  // An unmeasured device is assumed half as fast as the slowest measured one: never preferred on a guess.
  const assumed = measured.length > 0 ? Math.max(...measured) * 2 : 1
  const speedOf = (s: Stage): number => s.secondsPerGiB ?? assumed
  const fixedBytes = (s: Stage, output: boolean): number => fixedNodeBytes(model, s, output, contextSize)
  const capacity = (s: Stage, output: boolean): number => layerCapacity(model, s, output, contextSize)

  const hostStage = stages.find((s) => s.isHost)
  /**
   * The fixed part a plan pays once a token. Most of a device's measured fixed part is the step of the
   * llama-server that measured it, on its own machine; in a plan llama-server runs on the host only, so
   * the host's fixed part stands for it, with an accelerator's own where larger (its kernel launches are
   * paid where it runs). A CPU worker's fixed part is its machine's llama-server step, which the plan does
   * not run there: charged, the slowest machine's step priced the whole cluster (a quarter-core worker's
   * 12.9 ms, where the plan ran at 16 ms a token). Without a host measurement: the largest of the stages.
   */
  const hostNode = input.nodes.find((n) => n.isHost)
  const hostFixed =
    hostNode === undefined ? undefined : stages.filter((s) => s.node === hostNode && !s.accelerator).map((s) => s.fixedSeconds)
  const hostMeasured =
    hostNode !== undefined &&
    (hostNode.fixedSecondsPerToken !== undefined || (hostNode.devices ?? []).some((d) => d.fixedSecondsPerToken !== undefined))
  const planFixed = (order: readonly Stage[]): number =>
    hostMeasured
      ? Math.max(0, ...(hostFixed ?? []), ...order.filter((s) => s.accelerator).map((s) => s.fixedSeconds))
      : Math.max(0, ...order.map((s) => s.fixedSeconds))
  const bySpeed = [...stages].sort(
    (a, b) =>
      speedOf(a) - speedOf(b) ||
      a.node.hopSeconds - b.node.hopSeconds ||
      (a.node.peerId < b.node.peerId ? -1 : a.node.peerId > b.node.peerId ? 1 : a.index - b.index)
  )

  const layerGiB = (first: number, count: number): number =>
    model.layerWeightBytes.slice(first, first + count).reduce((a, b) => a + b, 0) / GIB
  /**
   * Most layers `s` holds of the ones from `from` on (step 1) or from `from` back (step -1), by their real
   * sizes: a quantized file's layers differ (Q4_K_M keeps some tensors of some layers at 6 bits), and
   * pricing every layer as the largest left memory unused.
   */
  const fits = (s: Stage, output: boolean, from: number, step: 1 | -1, most: number): number => {
    let free = s.memoryBudget - fixedBytes(s, output)
    let count = 0
    for (let i = from; count < most && i >= 0 && i < layerCount; i += step) {
      free -= (model.layerWeightBytes[i] ?? 0) + (kvOf[i] ?? 0)
      if (free < 0) break
      count++
    }
    return count
  }

  /** The output head is computed where it is placed (822 MiB in a 70B Q4_K_M), and its logits sent back. */
  const outputSeconds = (s: Stage): number => (model.outputBytes / GIB) * speedOf(s) + logitsSeconds(s.node.isHost, model.vocabSize)

  /**
   * The layer order of `subset` with `last` holding the output: nodes by their fastest stage (the subset is
   * speed-sorted), `last`'s node at the end, each node's stages in its server's order. Undefined when
   * `last` is not its node's last stage in the subset (a later device of the same server would follow it).
   */
  const orderOf = (subset: readonly Stage[], last: Stage): Stage[] | undefined => {
    if (subset.some((s) => s.node === last.node && s.index > last.index)) return undefined
    const nodes: PlanNode[] = []
    for (const s of subset) if (s.node !== last.node && !nodes.includes(s.node)) nodes.push(s.node)
    nodes.push(last.node)
    return nodes.flatMap((n) => subset.filter((s) => s.node === n).sort((a, b) => a.index - b.index))
  }

  /** Layer counts filled in `sequence`: `last` takes its count from the end, the others grow from layer 0. */
  const fill = (sequence: readonly Stage[], last: Stage): Map<Stage, number> | undefined => {
    let left = layerCount
    let head = 0
    const counts = new Map<Stage, number>()
    for (const s of sequence) {
      const take = s === last ? fits(s, true, layerCount - 1, -1, left) : fits(s, false, head, 1, left)
      counts.set(s, take)
      left -= take
      if (s !== last) head += take
    }
    return left > 0 ? undefined : counts
  }
  /** Whether every stage holds its range (in `order`) within its budget. */
  const holds = (order: readonly Stage[], counts: ReadonlyMap<Stage, number>): boolean => {
    let first = 0
    return order.every((s, i) => {
      const count = counts.get(s) ?? 0
      const bytes = layerGiB(first, count) * GIB + kvBytes(first, count) + fixedBytes(s, i === order.length - 1)
      first += count
      return bytes <= s.memoryBudget
    })
  }

  /**
   * Fill `subset` fastest-first with `last` holding the output; undefined when it cannot hold the model.
   * Counts are taken in speed order (`last` from the end, the others from layer 0); when a server's devices
   * make the layer order differ from the speed order and the sizes no longer fit in that order (layers
   * differ in size), the counts are taken in layer order instead.
   */
  const layout = (subset: readonly Stage[], last: Stage): Layout | undefined => {
    // the output head must fit where it goes, even with no layers beside it
    if (last.memoryBudget < fixedBytes(last, true)) return undefined
    const order = orderOf(subset, last)
    if (order === undefined) return undefined
    let counts = fill(subset, last)
    if (counts === undefined) return undefined
    if (!holds(order, counts)) counts = fill(order, last)
    if (counts === undefined) return undefined
    // The output stage must be used even with no layers (it holds the output head); others with none are dropped.
    if (order.some((s) => (counts.get(s) ?? 0) === 0 && s !== last)) return undefined // the same layout is found with the smaller subset
    let first = 0
    const cost = order.reduce(
      (sum, s) => {
        const count = counts.get(s) ?? 0
        const seconds = layerGiB(first, count) * speedOf(s) + s.node.hopSeconds
        first += count
        return sum + seconds
      },
      outputSeconds(last) + planFixed(order)
    )
    return { order, counts: order.map((s) => counts.get(s) ?? 0), cost }
  }

  const subsets: Stage[][] = []
  if (bySpeed.length <= 10) {
    for (let mask = 1; mask < 1 << bySpeed.length; mask++) subsets.push(bySpeed.filter((_, i) => (mask & (1 << i)) !== 0))
  } else {
    for (let k = 1; k <= bySpeed.length; k++) subsets.push(bySpeed.slice(0, k))
  }
  let best: Layout | undefined
  for (const subset of subsets) {
    for (const last of subset) {
      const candidate = layout(subset, last)
      if (candidate === undefined) continue
      if (
        best === undefined ||
        candidate.cost < best.cost - 1e-12 ||
        (Math.abs(candidate.cost - best.cost) <= 1e-12 && candidate.order.length < best.order.length)
      )
        best = candidate
    }
  }

  if (hostStage !== undefined && hostStage.memoryBudget < model.embeddingBytes + headroom) {
    throw new PlanError(
      `Cannot plan: the host ${stageName(hostStage)} offers ${formatGiB(hostStage.memoryBudget)} but needs ${formatGiB(model.embeddingBytes + headroom)} for the input embeddings and compute buffers`,
      [{ peerId: hostStage.node.peerId, requiredBytes: model.embeddingBytes + headroom, offeredBytes: hostStage.memoryBudget }]
    )
  }
  if (best === undefined) {
    const perLayer = maxLayerBytes + kvPerLayer
    const needed = layerCount * perLayer + model.outputBytes + model.embeddingBytes + headroom * stages.length
    const offered = stages.reduce((sum, s) => sum + s.memoryBudget, 0)
    const details = input.nodes.map((n) => {
      const own = stages.filter((s) => s.node === n)
      return {
        peerId: n.peerId,
        requiredBytes: Math.min(...own.map((s) => fixedBytes(s, false))) + perLayer,
        offeredBytes: own.reduce((sum, s) => sum + s.memoryBudget, 0)
      }
    })
    throw new PlanError(
      `Cannot place ${model.name}: ${layerCount} layers need ${formatGiB(needed)} (weights, KV cache for ${contextSize} tokens, output, embeddings, compute headroom) ` +
        `but the nodes offer ${formatGiB(offered)}: ` +
        stages
          .map((s) => `${stageName(s)} offers ${formatGiB(s.memoryBudget)}, holds ${capacity(s, false)} layer(s) of ${formatGiB(perLayer)}`)
          .join('; '),
      details
    )
  }

  const chosen = best
  // the plan's fixed part, paid once: shown on the stage that brought it (the first such), else the first
  const fixedSeconds = planFixed(chosen.order)
  const fixedShare = chosen.order.find((s) => s.fixedSeconds === fixedSeconds) ?? chosen.order[0]
  let first = 0
  const nodes: NodePlan[] = chosen.order.map((s, i) => {
    const n = s.node
    const count = chosen.counts[i] ?? 0
    const output = i === chosen.order.length - 1
    const weights = model.layerWeightBytes.slice(first, first + count).reduce((a, b) => a + b, 0)
    const layers: [number, number] | null = count > 0 ? [first, first + count - 1] : null
    const kv = kvBytes(first, count)
    first += count
    const memory: NodeMemory = {
      weights,
      kv,
      output: output ? model.outputBytes : 0,
      embeddings: s.isHost ? model.embeddingBytes : 0,
      headroom,
      total: weights + kv + fixedBytes(s, output),
      budget: s.memoryBudget
    }
    // the note only: no further layer of the smallest size would have fitted
    const full = count < layerCount && memory.total + Math.min(...model.layerWeightBytes) + Math.min(...kvOf) > s.memoryBudget
    const speedNote =
      s.secondsPerGiB === undefined
        ? 'speed not measured (assumed slow)'
        : `${s.secondsPerGiB.toFixed(3)} s/GiB${s.fixedSeconds > 0 ? ` + ${(s.fixedSeconds * 1000).toFixed(2)} ms a token` : ''}`
    const why = full
      ? `${speedNote}; filled to its memory (${formatGiB(memory.total)} of ${formatGiB(s.memoryBudget)})`
      : `${speedNote}; ${count === layerCount ? 'holds the whole model' : 'takes the remaining layers'}`
    return {
      peerId: n.peerId,
      hostname: n.hostname,
      rpc: n.rpc,
      device: s.device,
      deviceIndex: s.index,
      layerCount: count,
      layers,
      output,
      memory,
      secondsPerGiB: speedOf(s),
      speedMeasured: s.secondsPerGiB !== undefined,
      secondsPerToken:
        (weights / GIB) * speedOf(s) + (s === fixedShare ? fixedSeconds : 0) + n.hopSeconds + (output ? outputSeconds(s) : 0),
      why: output ? `${why}; holds the output layer` : why
    }
  })
  const usedNodes: PlanNode[] = []
  for (const s of chosen.order) if (!usedNodes.includes(s.node)) usedNodes.push(s.node)
  const notNeeded = 'not needed: the faster devices hold the model, and another hop would cost more than it saves'
  const unused: Array<Plan['unused'][number]> = []
  for (const n of input.nodes) {
    const own = stages.filter((s) => s.node === n)
    if (!usedNodes.includes(n)) {
      unused.push({
        peerId: n.peerId,
        hostname: n.hostname,
        why: own.every((s) => capacity(s, false) === 0)
          ? `offers ${formatGiB(own.reduce((sum, s) => sum + s.memoryBudget, 0))}: not enough for one layer plus headroom`
          : notNeeded
      })
      continue
    }
    for (const s of own) {
      if (s.device === null || chosen.order.includes(s)) continue
      unused.push({
        peerId: n.peerId,
        hostname: n.hostname,
        device: s.device,
        why:
          capacity(s, false) === 0
            ? `offers ${formatGiB(s.memoryBudget)}: not enough for one layer plus headroom`
            : 'left out: slower than it helps (the model fits without it)'
      })
    }
  }
  // One --tensor-split entry per device of every used server, in llama.cpp's order; zero for the left out.
  const countsPerDevice: number[] = []
  let outputIndex = 0
  for (const n of usedNodes) {
    for (const s of stages.filter((x) => x.node === n)) {
      const at = chosen.order.indexOf(s)
      if (at === chosen.order.length - 1) outputIndex = countsPerDevice.length
      countsPerDevice.push(at === -1 ? 0 : (chosen.counts[at] ?? 0))
    }
  }
  // a prompt's batches go through every stage in turn: the round trips are per batch, not per token
  const promptSeconds = nodes.reduce<number | null>((sum, n, i) => {
    const price = chosen.order[i]?.promptSecondsPerGiB
    return sum === null || price === undefined ? null : sum + ((n.memory.weights + n.memory.output) / GIB) * price
  }, 0)
  return {
    model: { name: model.name, id: model.id },
    contextSize,
    nodes,
    unused,
    rpc: usedNodes.map((n) => n.rpc),
    tensorSplit: tensorSplitForLayerCounts(countsPerDevice, outputIndex),
    gpuLayers: 'all',
    predictedSecondsPerToken: chosen.cost,
    predictedTokensPerSecond: chosen.cost > 0 ? 1 / chosen.cost : 0,
    predictedPromptTokensPerSecond: promptSeconds !== null && promptSeconds > 0 ? 1 / promptSeconds : null
  }
}

/**
 * Whether a node's rpc-server computes on an accelerator (a GPU...): the devices it serves (an older agent's
 * listed devices when it says nothing of which it serves). Its own fixed part is then paid (planFixed). Pure.
 */
export function servesAccelerator(devices: ReadonlyArray<{ readonly kind: string; readonly rpcIndex?: number | undefined }>): boolean {
  const served = devices.filter((d) => d.rpcIndex !== undefined)
  return (served.length > 0 ? served : devices).some((d) => d.kind !== 'cpu')
}

/**
 * The plan devices of a node from what it announced: its rpc-server's devices with their budgets and
 * speeds, in the server's order, when it serves several (each gets its own --tensor-split entry);
 * undefined plans it as one device. `budget` may lower a device's offer (the coordinator's cuts after a
 * failed allocation). Pure; the coordinator and `sollol-agent plan` both use it.
 */
export function planDevicesOf(
  devices: ReadonlyArray<{
    readonly name: string
    readonly kind: string
    readonly type?: string
    readonly rpcIndex?: number
    readonly budget?: number
    readonly speed?: {
      readonly secondsPerGiB: number
      readonly fixedSecondsPerToken?: number | undefined
      readonly promptSecondsPerGiB?: number | undefined
    } | null
  }>,
  budget: (name: string, offer: number) => number = (_, offer) => offer
): PlanDevice[] | undefined {
  const listed = devices.filter((d) => d.rpcIndex !== undefined && d.budget !== undefined)
  if (listed.length < 2) return undefined
  return [...listed]
    .sort((x, y) => (x.rpcIndex ?? 0) - (y.rpcIndex ?? 0))
    .map((d) => ({
      name: d.name,
      memoryBudget: budget(d.name, d.budget ?? 0),
      secondsPerGiB: d.speed?.secondsPerGiB,
      ...(d.speed?.fixedSecondsPerToken !== undefined ? { fixedSecondsPerToken: d.speed.fixedSecondsPerToken } : {}),
      ...(d.speed?.promptSecondsPerGiB !== undefined ? { promptSecondsPerGiB: d.speed.promptSecondsPerGiB } : {}),
      hostMemory: d.type === 'cpu'
    }))
}
