/**
 * What a planner needs to know about a model, derived from a GGUF file's header alone.
 * Pure: takes the parsed header, does no I/O.
 */
import { ExitCode, ggmlTypeBytes, kvBytesPerToken, SollolError } from '@sollol/core'

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
  readonly headCount: number
  readonly headCountKv: number
  readonly keyLength: number
  readonly valueLength: number
  readonly vocabSize: number
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
}

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
  const headCount = requireNumber(metadata, key('attention.head_count'))
  const headCountKv = numberAt(metadata, key('attention.head_count_kv')) ?? headCount
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
  const tiedOutput = !hasOutputWeight
  if (tiedOutput) outputBytes += embeddingBytes

  return {
    architecture,
    name: typeof metadata['general.name'] === 'string' ? metadata['general.name'] : undefined,
    layerCount,
    contextLength: requireNumber(metadata, key('context_length')),
    embeddingLength,
    feedForwardLength: numberAt(metadata, key('feed_forward_length')),
    headCount,
    headCountKv,
    keyLength,
    valueLength,
    vocabSize,
    layerWeightBytes,
    embeddingBytes,
    outputBytes,
    tiedOutput,
    totalWeightBytes,
    kvBytesPerTokenPerLayer: kvBytesPerToken({ headCountKv, keyLength, valueLength })
  }
}

/** KV-cache bytes of one layer for a context of `contextTokens` (f16 cache). */
export function kvBytesPerLayer(model: ModelInfo, contextTokens: number): number {
  return model.kvBytesPerTokenPerLayer * contextTokens
}
