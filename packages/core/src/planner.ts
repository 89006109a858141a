/**
 * Which layers go to which node. Pure, table-tested.
 *
 * Cost model (single-stream decode): time per token = sum over used nodes of (their layers x their time
 * per layer) + a cost per network hop (each used rpc-server is at least one round trip per token).
 * Time per layer = the layer's GiB x the node's measured seconds per GiB (see calibration). With costs
 * linear in layers, the fastest nodes are filled first; which nodes to use at all is searched (every
 * subset up to 10 nodes, speed-ordered prefixes beyond), so a slow node is used only when the model
 * does not fit without it, and a model that fits on one node runs there unless splitting truly pays.
 *
 * Memory per node: its layers' weights + their KV cache at the context size + a compute headroom,
 * plus the output head on the last node and the input embeddings on the host (llama-server's machine).
 */
import { tensorSplitForLayerCounts } from './layer-split.js'
import { ExitCode, SollolError } from './errors.js'

const GIB = 2 ** 30

export interface PlanModel {
  readonly name: string
  readonly id: string
  readonly layerWeightBytes: readonly number[]
  readonly embeddingBytes: number
  readonly outputBytes: number
  readonly kvBytesPerTokenPerLayer: number
  readonly embeddingLength: number
  /** Attention heads (query): the attention scores of a batch against the context grow with them. */
  readonly headCount: number
  readonly vocabSize: number
  readonly contextLength: number
}

export interface PlanNode {
  readonly peerId: string
  readonly hostname?: string
  /** rpc-server endpoint `host:port`. */
  readonly rpc: string
  readonly memoryBudget: number
  /** Measured; undefined = not measured (then assumed slower than every measured node). */
  readonly secondsPerGiB: number | undefined
  /** Per-token cost of using this node at all (round trips). */
  readonly hopSeconds: number
  /** Runs llama-server: keeps the input embeddings. */
  readonly isHost: boolean
}

export interface PlanInput {
  readonly model: PlanModel
  readonly nodes: readonly PlanNode[]
  /** Tokens of context (KV cache); default min(model's, 4096). */
  readonly contextSize?: number
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
  /** Used nodes in `--rpc` order (layers run in this order; the last one holds the output layer). */
  readonly nodes: readonly NodePlan[]
  readonly unused: ReadonlyArray<{ readonly peerId: string; readonly hostname: string | undefined; readonly why: string }>
  readonly rpc: readonly string[]
  readonly tensorSplit: readonly number[]
  readonly gpuLayers: 'all'
  readonly predictedSecondsPerToken: number
  readonly predictedTokensPerSecond: number
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
 * Compute buffers llama.cpp allocates per device: the peak of what a step's graph holds at once, which is
 * either a batch's activations across the model's widths or the attention scores of a batch against the
 * whole context (ubatch x context x heads, priced as f32); the allocator reuses one's memory for the other.
 * The second grows with the context: without it gemma3 at 1024 cells reserved 13.1 MiB on a device against
 * 11.7 estimated (test/architectures.test.ts compares them; docs/estimates.md).
 */
export function computeHeadroomBytes(model: PlanModel, contextSize: number): number {
  const activations = 8 * UBATCH * (8 * model.embeddingLength + model.vocabSize)
  const attentionScores = UBATCH * contextSize * model.headCount * 4
  return Math.max(activations, attentionScores) + 2 * 2 ** 20
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
  const perLayer = Math.max(0, ...model.layerWeightBytes) + model.kvBytesPerTokenPerLayer * contextSize
  const free = n.memoryBudget - fixedNodeBytes(model, n, output, contextSize)
  return free <= 0 ? 0 : Math.min(layerCount, Math.floor(free / perLayer))
}

interface Layout {
  readonly order: readonly PlanNode[]
  readonly counts: readonly number[]
  readonly cost: number
}

export function plan(input: PlanInput): Plan {
  const { model } = input
  const layerCount = model.layerWeightBytes.length
  const contextSize = input.contextSize ?? Math.min(model.contextLength, DEFAULT_CONTEXT)
  const kvPerLayer = model.kvBytesPerTokenPerLayer * contextSize
  const maxLayerBytes = Math.max(0, ...model.layerWeightBytes)
  const headroom = computeHeadroomBytes(model, contextSize)
  if (input.nodes.length === 0) throw new PlanError('Cannot plan: no node with a usable rpc-server', [])

  const measured = input.nodes.map((n) => n.secondsPerGiB).filter((s): s is number => s !== undefined)
  // An unmeasured node is assumed half as fast as the slowest measured one: never preferred on a guess.
  const assumed = measured.length > 0 ? Math.max(...measured) * 2 : 1
  const speedOf = (n: PlanNode): number => n.secondsPerGiB ?? assumed
  const fixedBytes = (n: PlanNode, output: boolean): number => fixedNodeBytes(model, n, output, contextSize)
  const capacity = (n: PlanNode, output: boolean): number => layerCapacity(model, n, output, contextSize)

  const host = input.nodes.find((n) => n.isHost)
  const bySpeed = [...input.nodes].sort((a, b) => speedOf(a) - speedOf(b) || a.hopSeconds - b.hopSeconds || (a.peerId < b.peerId ? -1 : 1))

  const layerGiB = (first: number, count: number): number =>
    model.layerWeightBytes.slice(first, first + count).reduce((a, b) => a + b, 0) / GIB
  /**
   * Most layers `n` holds of the ones from `from` on (step 1) or from `from` back (step -1), by their real
   * sizes: a quantized file's layers differ (Q4_K_M keeps some tensors of some layers at 6 bits), and
   * pricing every layer as the largest left memory unused.
   */
  const fits = (n: PlanNode, output: boolean, from: number, step: 1 | -1, most: number): number => {
    let free = n.memoryBudget - fixedBytes(n, output)
    let count = 0
    for (let i = from; count < most && i >= 0 && i < layerCount; i += step) {
      free -= (model.layerWeightBytes[i] ?? 0) + kvPerLayer
      if (free < 0) break
      count++
    }
    return count
  }

  /**
   * Fill `subset` fastest-first with `last` holding the output; undefined when it cannot hold the model.
   * The layers run in `--rpc` order (the others in subset order, then `last`), so the others' ranges grow
   * from layer 0 and `last` takes its count from the end.
   */
  const layout = (subset: readonly PlanNode[], last: PlanNode): Layout | undefined => {
    // the output head must fit where it goes, even with no layers beside it
    if (last.memoryBudget < fixedBytes(last, true)) return undefined
    let left = layerCount
    let head = 0
    const counts = new Map<PlanNode, number>()
    for (const n of subset) {
      const take = n === last ? fits(n, true, layerCount - 1, -1, left) : fits(n, false, head, 1, left)
      counts.set(n, take)
      left -= take
      if (n !== last) head += take
    }
    if (left > 0) return undefined
    // The output node must be used even with no layers (it holds the output head); others with none are dropped.
    const used = subset.filter((n) => (counts.get(n) ?? 0) > 0 || n === last)
    if (used.length !== subset.length) return undefined // the same layout is found with the smaller subset
    const order = [...used.filter((n) => n !== last), last]
    let first = 0
    const cost = order.reduce((sum, n) => {
      const count = counts.get(n) ?? 0
      const seconds = layerGiB(first, count) * speedOf(n) + n.hopSeconds
      first += count
      return sum + seconds
    }, 0)
    return { order, counts: order.map((n) => counts.get(n) ?? 0), cost }
  }

  const subsets: PlanNode[][] = []
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

  if (host !== undefined && host.memoryBudget < model.embeddingBytes + headroom) {
    throw new PlanError(
      `Cannot plan: the host ${host.hostname ?? host.peerId} offers ${formatGiB(host.memoryBudget)} but needs ${formatGiB(model.embeddingBytes + headroom)} for the input embeddings and compute buffers`,
      [{ peerId: host.peerId, requiredBytes: model.embeddingBytes + headroom, offeredBytes: host.memoryBudget }]
    )
  }
  if (best === undefined) {
    const perLayer = maxLayerBytes + kvPerLayer
    const needed = layerCount * perLayer + model.outputBytes + model.embeddingBytes + headroom * input.nodes.length
    const offered = input.nodes.reduce((sum, n) => sum + n.memoryBudget, 0)
    const details = input.nodes.map((n) => ({
      peerId: n.peerId,
      requiredBytes: fixedBytes(n, false) + perLayer,
      offeredBytes: n.memoryBudget
    }))
    throw new PlanError(
      `Cannot place ${model.name}: ${layerCount} layers need ${formatGiB(needed)} (weights, KV cache for ${contextSize} tokens, output, embeddings, compute headroom) ` +
        `but the nodes offer ${formatGiB(offered)}: ` +
        input.nodes
          .map(
            (n) =>
              `${n.hostname ?? n.peerId} offers ${formatGiB(n.memoryBudget)}, holds ${capacity(n, false)} layer(s) of ${formatGiB(perLayer)}`
          )
          .join('; '),
      details
    )
  }

  const chosen = best
  let first = 0
  const nodes: NodePlan[] = chosen.order.map((n, i) => {
    const count = chosen.counts[i] ?? 0
    const output = i === chosen.order.length - 1
    const weights = model.layerWeightBytes.slice(first, first + count).reduce((a, b) => a + b, 0)
    const layers: [number, number] | null = count > 0 ? [first, first + count - 1] : null
    first += count
    const memory: NodeMemory = {
      weights,
      kv: count * kvPerLayer,
      output: output ? model.outputBytes : 0,
      embeddings: n.isHost ? model.embeddingBytes : 0,
      headroom,
      total: weights + count * kvPerLayer + fixedBytes(n, output),
      budget: n.memoryBudget
    }
    // the note only: no further layer of the smallest size would have fitted
    const full = count < layerCount && memory.total + Math.min(...model.layerWeightBytes) + kvPerLayer > n.memoryBudget
    const speedNote = n.secondsPerGiB === undefined ? 'speed not measured (assumed slow)' : `${n.secondsPerGiB.toFixed(3)} s/GiB`
    const why = full
      ? `${speedNote}; filled to its memory (${formatGiB(memory.total)} of ${formatGiB(n.memoryBudget)})`
      : `${speedNote}; ${count === layerCount ? 'holds the whole model' : 'takes the remaining layers'}`
    return {
      peerId: n.peerId,
      hostname: n.hostname,
      rpc: n.rpc,
      layerCount: count,
      layers,
      output,
      memory,
      secondsPerGiB: speedOf(n),
      speedMeasured: n.secondsPerGiB !== undefined,
      secondsPerToken: (weights / GIB) * speedOf(n) + n.hopSeconds,
      why: output ? `${why}; holds the output layer` : why
    }
  })
  const usedIds = new Set(nodes.map((n) => n.peerId))
  const unused = input.nodes
    .filter((n) => !usedIds.has(n.peerId))
    .map((n) => ({
      peerId: n.peerId,
      hostname: n.hostname,
      why:
        capacity(n, false) === 0
          ? `offers ${formatGiB(n.memoryBudget)}: not enough for one layer plus headroom`
          : 'not needed: the faster nodes hold the model, and another hop would cost more than it saves'
    }))
  return {
    model: { name: model.name, id: model.id },
    contextSize,
    nodes,
    unused,
    rpc: nodes.map((n) => n.rpc),
    tensorSplit: tensorSplitForLayerCounts(nodes.map((n) => n.layerCount)),
    gpuLayers: 'all',
    predictedSecondsPerToken: chosen.cost,
    predictedTokensPerSecond: chosen.cost > 0 ? 1 / chosen.cost : 0
  }
}
