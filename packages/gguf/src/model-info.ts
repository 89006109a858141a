/**
 * What a planner needs to know about a model, derived from a GGUF file's header alone.
 * Pure: takes the parsed header, does no I/O.
 */
import { ExitCode, ggmlTypeBytes, ggmlTypeName, kvBytesPerToken, SollolError, type SlidingWindow } from '@sollol/core'

/** One tensor as listed in a GGUF header. `offset` is relative to the start of the tensor data. */
export interface TensorEntry {
  readonly name: string
  readonly shape: readonly number[]
  readonly ggmlType: number
  readonly offset: number
}

export interface GgufHeader {
  readonly metadata: Readonly<Record<string, unknown>>
  readonly tensors: readonly TensorEntry[]
  /** Absolute file offset where tensor data begins. */
  readonly tensorDataOffset: number
  /** Size of the whole file in bytes; the last tensor ends here (minus padding). */
  readonly fileSize: number
}

export interface ModelInfo {
  readonly architecture: string
  readonly name: string | undefined
  readonly layerCount: number
  readonly contextLength: number
  readonly embeddingLength: number
  readonly feedForwardLength: number | undefined
  /**
   * The widest feed-forward activation one token makes in any layer: the largest per-layer
   * feed_forward_length, or for a mixture of experts the used experts' widths (plus a shared expert's).
   * Undefined when the file gives neither (the planner then assumes 4 x embedding_length).
   */
  readonly feedForwardWidth: number | undefined
  readonly headCount: number
  /** The largest, when the file gives one per layer (then headCountKvPerLayer has them all). */
  readonly headCountKv: number
  /** KV heads per layer when the file gives an array (some layers may have none); null when one for all. */
  readonly headCountKvPerLayer: readonly number[] | null
  readonly keyLength: number
  readonly valueLength: number
  readonly vocabSize: number
  /**
   * The ggml type that holds most of the layers' bytes (`q4_k` in a Q4_K_M file, whose layers mix q4_k and
   * q6_k), by name; the id in brackets for a type this reader does not name. What a calibration copies.
   */
  readonly layerWeightType: string
  /** Bytes of the weights of each repeating layer `blk.N.*`, index = layer. */
  readonly layerWeightBytes: readonly number[]
  /** Bytes of the input embeddings (token_embd); they stay on the host that runs llama-server. */
  readonly embeddingBytes: number
  /**
   * Bytes of the output head (output.weight and output_norm). A model with tied embeddings has no
   * output.weight: llama.cpp then uses a copy of token_embd as the output, so it counts here as well.
   */
  readonly outputBytes: number
  readonly tiedOutput: boolean
  /** Every tensor byte in the file. */
  readonly totalWeightBytes: number
  /** KV-cache bytes one token takes in one layer with an f16 cache (llama.cpp's default). */
  readonly kvBytesPerTokenPerLayer: number
  /** Sliding-window attention as llama.cpp will run it, when known (see slidingWindowOf); null: none or not modelled. */
  readonly slidingWindow: SlidingWindow | null
}

/**
 * Which layers use a sliding window, as llama.cpp decides it: `<arch>.attention.sliding_window` with the
 * pattern from `<arch>.attention.sliding_window_pattern` (a period: every period-th layer is full, the last
 * of each period; or one flag per layer), else the architecture's default period (gemma3: 6, gemma2: 2, cohere2: 4, gpt-oss: 2).
 * Other architectures with a window but no pattern are not modelled (null: every layer gets the whole
 * context, the safe side). Pure.
 */
export function slidingWindowOf(
  architecture: string,
  metadata: Readonly<Record<string, unknown>>,
  layerCount: number
): SlidingWindow | null {
  const window = metadata[`${architecture}.attention.sliding_window`]
  if (typeof window !== 'number' || window <= 0) return null
  const pattern = metadata[`${architecture}.attention.sliding_window_pattern`]
  if (Array.isArray(pattern) && pattern.length >= layerCount) {
    return { window, layers: pattern.slice(0, layerCount).map((x) => x === true || x === 1) }
  }
  const period = typeof pattern === 'number' ? pattern : SLIDING_WINDOW_PERIOD[architecture]
  if (period === undefined) return null
  // llama_hparams::set_swa_pattern: period 0 = every layer; else all but the last of each period
  return { window, layers: Array.from({ length: layerCount }, (_, il) => period === 0 || il % period < period - 1) }
}

/** Architectures whose sliding-window pattern llama.cpp fixes when the file does not say (src/models/*.cpp). */
const SLIDING_WINDOW_PERIOD: Readonly<Record<string, number>> = { gemma3: 6, gemma2: 2, cohere2: 4, 'gpt-oss': 2 }

export class GgufFormatError extends SollolError {
  constructor(message: string) {
    super(message, ExitCode.USAGE)
  }
}

function numberAt(metadata: Readonly<Record<string, unknown>>, key: string): number | undefined {
  const value = metadata[key]
  if (typeof value === 'number') return value
  if (typeof value === 'bigint') return Number(value)
  return undefined
}

/** A per-layer array metadata value (numbers, one per layer at least), else null. */
function perLayerNumbers(value: unknown, layerCount: number): number[] | null {
  if (!Array.isArray(value) || value.length < layerCount || !value.every((x) => typeof x === 'number')) return null
  return (value as number[]).slice(0, layerCount)
}

/** See ModelInfo.feedForwardWidth. Pure. */
function feedForwardWidthOf(
  metadata: Readonly<Record<string, unknown>>,
  key: (suffix: string) => string,
  layerCount: number
): number | undefined {
  const perLayer = perLayerNumbers(metadata[key('feed_forward_length')], layerCount)
  const dense = perLayer !== null ? Math.max(...perLayer) : numberAt(metadata, key('feed_forward_length'))
  const expertWidth = numberAt(metadata, key('expert_feed_forward_length'))
  const used = numberAt(metadata, key('expert_used_count'))
  const experts =
    expertWidth !== undefined && used !== undefined
      ? expertWidth * used + (numberAt(metadata, key('expert_shared_feed_forward_length')) ?? 0)
      : undefined
  if (dense === undefined) return experts
  return experts === undefined ? dense : Math.max(dense, experts)
}

function requireNumber(metadata: Readonly<Record<string, unknown>>, key: string): number {
  const value = numberAt(metadata, key)
  if (value === undefined) throw new GgufFormatError(`Expected GGUF metadata key \`${key}\` to be a number, got ${describe(metadata[key])}`)
  return value
}

function describe(value: unknown): string {
  if (value === undefined) return 'nothing'
  if (Array.isArray(value)) return `an array of ${value.length}`
  return `${typeof value} \`${String(value).slice(0, 40)}\``
}

/** Bytes a tensor's data takes, from its shape and type; undefined for a type not in ggml's table. */
export function tensorDataBytes(tensor: { readonly shape: readonly number[]; readonly ggmlType: number }): number | undefined {
  return ggmlTypeBytes(
    tensor.ggmlType,
    tensor.shape.reduce((a, b) => a * b, 1)
  )
}

/**
 * Throws when a GGUF file holds less tensor data than its header describes. A copy cut short (an
 * interrupted download, a full disk) reads like a whole file up to its last tensor, and llama-server would
 * fail on it later, on every load; the last tensor's shape and type say how long the file must be.
 */
export function checkTensorData(header: GgufHeader, path: string): void {
  const last = [...header.tensors].sort((a, b) => a.offset - b.offset).at(-1)
  const lastBytes = last !== undefined ? tensorDataBytes(last) : undefined
  const dataBytes = header.fileSize - header.tensorDataOffset
  if (last !== undefined && lastBytes !== undefined && last.offset + lastBytes > dataBytes)
    throw new GgufFormatError(
      `Expected \`${path}\` to hold ${last.offset + lastBytes} bytes of tensor data, got ${dataBytes}: the file is truncated (copy or download it again)`
    )
}

/** Byte size of each tensor, from the distance between consecutive data offsets (works for every quant type). */
export function tensorByteSizes(header: GgufHeader): Map<string, number> {
  const sorted = [...header.tensors].sort((a, b) => a.offset - b.offset)
  const dataBytes = header.fileSize - header.tensorDataOffset
  const sizes = new Map<string, number>()
  sorted.forEach((tensor, index) => {
    const end = sorted[index + 1]?.offset ?? dataBytes
    if (end < tensor.offset)
      throw new GgufFormatError(
        `Expected tensor \`${tensor.name}\` to end inside the file, got offset ${tensor.offset} past ${dataBytes} data bytes`
      )
    sizes.set(tensor.name, end - tensor.offset)
  })
  return sizes
}

const LAYER_TENSOR = /^blk\.(\d+)\./

export function describeModel(header: GgufHeader): ModelInfo {
  const { metadata } = header
  const architecture = metadata['general.architecture']
  if (typeof architecture !== 'string')
    throw new GgufFormatError(`Expected GGUF metadata \`general.architecture\` to be a string, got ${describe(architecture)}`)
  const key = (suffix: string): string => `${architecture}.${suffix}`

  const layerCount = requireNumber(metadata, key('block_count'))
  const embeddingLength = requireNumber(metadata, key('embedding_length'))
  // head counts may be one per layer (an array): the largest stands for the model, the array sizes each layer's cache
  const headCounts = perLayerNumbers(metadata[key('attention.head_count')], layerCount)
  const headCount = headCounts !== null ? Math.max(...headCounts) : requireNumber(metadata, key('attention.head_count'))
  const headCountKvPerLayer = perLayerNumbers(metadata[key('attention.head_count_kv')], layerCount)
  const headCountKv =
    headCountKvPerLayer !== null ? Math.max(...headCountKvPerLayer) : (numberAt(metadata, key('attention.head_count_kv')) ?? headCount)
  const headDim = embeddingLength / headCount
  const keyLength = numberAt(metadata, key('attention.key_length')) ?? headDim
  const valueLength = numberAt(metadata, key('attention.value_length')) ?? headDim
  const tokens = metadata['tokenizer.ggml.tokens']
  const vocabSize = numberAt(metadata, key('vocab_size')) ?? (Array.isArray(tokens) ? tokens.length : 0)

  const sizes = tensorByteSizes(header)
  const layerWeightBytes = new Array<number>(layerCount).fill(0)
  let embeddingBytes = 0
  let outputBytes = 0
  let hasOutputWeight = false
  let totalWeightBytes = 0
  for (const [name, bytes] of sizes) {
    totalWeightBytes += bytes
    const layer = LAYER_TENSOR.exec(name)
    if (layer !== null) {
      const index = Number(layer[1])
      if (index >= layerCount) throw new GgufFormatError(`Expected layer tensors below block_count ${layerCount}, got \`${name}\``)
      layerWeightBytes[index] = (layerWeightBytes[index] ?? 0) + bytes
    } else if (name === 'token_embd.weight') {
      embeddingBytes += bytes
    } else if (name.startsWith('output')) {
      outputBytes += bytes
      if (name === 'output.weight') hasOutputWeight = true
    }
  }
  const bytesByType = new Map<number, number>()
  for (const t of header.tensors)
    if (LAYER_TENSOR.test(t.name)) bytesByType.set(t.ggmlType, (bytesByType.get(t.ggmlType) ?? 0) + (sizes.get(t.name) ?? 0))
  const [mainType] = [...bytesByType].reduce<[number, number]>((best, e) => (e[1] > best[1] ? e : best), [0, -1])
  const tiedOutput = !hasOutputWeight
  if (tiedOutput) outputBytes += embeddingBytes

  return {
    architecture,
    name: typeof metadata['general.name'] === 'string' ? metadata['general.name'] : undefined,
    layerCount,
    contextLength: requireNumber(metadata, key('context_length')),
    embeddingLength,
    feedForwardLength: numberAt(metadata, key('feed_forward_length')),
    feedForwardWidth: feedForwardWidthOf(metadata, key, layerCount),
    headCount,
    headCountKv,
    headCountKvPerLayer,
    keyLength,
    valueLength,
    vocabSize,
    layerWeightType: ggmlTypeName(mainType) ?? `[${mainType}]`,
    layerWeightBytes,
    embeddingBytes,
    outputBytes,
    tiedOutput,
    totalWeightBytes,
    kvBytesPerTokenPerLayer: kvBytesPerToken({ headCountKv, keyLength, valueLength }),
    slidingWindow: slidingWindowOf(architecture, metadata, layerCount)
  }
}

/** KV-cache bytes of one layer for a context of `contextTokens` (f16 cache). */
export function kvBytesPerLayer(model: ModelInfo, contextTokens: number): number {
  return model.kvBytesPerTokenPerLayer * contextTokens
}
