/**
 * Generates a small GGUF with deterministic random weights and a tiny SentencePiece-style vocabulary, of
 * one of the architectures people run (llama; qwen2 with attention biases; qwen3 with q/k norms; gemma3 with
 * sliding-window layers and post-norms; qwen3moe, a mixture of experts; deci, Nemotron's layers of unlike
 * shapes: KV heads and feed-forward width given per layer, one layer of "linear attention" with no KV cache).
 * llama-server loads it and completes
 * text with it, so tests, benchmarks and a user's smoke test need no download. Same options + seed = same bytes.
 * The tensor names and shapes are llama.cpp's (src/models/<arch>.cpp of the release we build).
 */
import { QUANTIZED_LAYOUTS, TensorType, ValueType, writeGguf, type MetadataEntry, type TensorSpec } from './writer.js'
import { ExitCode, SollolError } from '@sollol/core'
import { seededRandom } from '@sollol/core'

/** The architectures the generator writes. */
export const TEST_ARCHITECTURES = ['llama', 'qwen2', 'qwen3', 'gemma3', 'qwen3moe', 'deci'] as const
export type TestArchitecture = (typeof TEST_ARCHITECTURES)[number]

/** The mixture of experts of `qwen3moe`: experts per layer, used per token; each expert's ff is ff / used. */
export const TEST_MOE = { experts: 4, used: 2 } as const
/**
 * deci: per layer, the KV heads (heads / 1, 2 or 4 in turn; the second layer none: its attention is one
 * matrix and keeps no cache) and the feed-forward width (ff, then ff / 2 in turn). Pure.
 */
export function deciLayerShapes(layers: number, heads: number, ff: number): { kvHeads: number[]; ff: number[] } {
  return {
    kvHeads: Array.from({ length: layers }, (_, il) => (il === 1 ? 0 : heads / [1, 2, 4][il % 3]!)),
    ff: Array.from({ length: layers }, (_, il) => (il % 2 === 0 ? ff : ff / 2))
  }
}

/**
 * The weight types a generated model's layers can have: f32, f16, or one of ggml's quantized types (random
 * blocks: a model to time, whose text is noise; see writer.ts). Only the layers' matrices are quantized;
 * embeddings stay f16 and norms f32, as in the files people download.
 */
export const TEST_WEIGHT_TYPES = {
  f32: TensorType.F32,
  f16: TensorType.F16,
  q4_0: TensorType.Q4_0,
  q4_1: TensorType.Q4_1,
  q5_0: TensorType.Q5_0,
  q5_1: TensorType.Q5_1,
  q8_0: TensorType.Q8_0,
  q2_k: TensorType.Q2_K,
  q3_k: TensorType.Q3_K,
  q4_k: TensorType.Q4_K,
  q5_k: TensorType.Q5_K,
  q6_k: TensorType.Q6_K
} as const
export type TestWeightType = keyof typeof TEST_WEIGHT_TYPES

/** llama.cpp's `general.file_type` (llama_ftype) for a model whose layers are of that type. */
const FILE_TYPES: Record<TestWeightType, number> = {
  f32: 0,
  f16: 1,
  q4_0: 2,
  q4_1: 3,
  q8_0: 7,
  q5_0: 8,
  q5_1: 9,
  q2_k: 10,
  q3_k: 11,
  q4_k: 14,
  q5_k: 16,
  q6_k: 18
}

/** Values per block of a weight type: every row of a quantized matrix holds whole blocks. */
export function weightTypeBlock(type: TestWeightType): number {
  return QUANTIZED_LAYOUTS.get(TEST_WEIGHT_TYPES[type])?.values ?? 1
}

/** gemma3: the sliding window in tokens (5 layers in 6 use it, llama.cpp's default pattern). */
export const TEST_SLIDING_WINDOW = 128

export interface TestModelOptions {
  /** llama.cpp's architecture name (default llama). */
  readonly arch?: TestArchitecture
  /** Repeating transformer blocks. */
  readonly layers: number
  /** Hidden size; must be a multiple of `heads`. */
  readonly embd: number
  /** Feed-forward size. */
  readonly ff: number
  readonly heads: number
  readonly contextLength: number
  /** The layers' weight type (TEST_WEIGHT_TYPES). */
  readonly type: TestWeightType
  readonly seed: number
  /** Standard deviation of the random weights: large values give varied greedy output. */
  readonly weightStd: number
}

/** About 1.5 MB with 8 layers: loads in well under a second, fast enough for every test. */
export const DEFAULT_TEST_MODEL: TestModelOptions = {
  layers: 8,
  embd: 64,
  ff: 128,
  heads: 4,
  contextLength: 4096,
  type: 'f32',
  seed: 42,
  weightStd: 0.5
}

/**
 * 16 layers of 2.5 MiB (40 MiB, f32): small enough to load in a second, big enough that agents offering a
 * few tens of MiB each must split it (the e2e tests, the demo, the failover benchmark).
 */
export const SPLIT_TEST_MODEL: TestModelOptions = { ...DEFAULT_TEST_MODEL, layers: 16, embd: 256, ff: 512, heads: 8 }

export class TestModelOptionError extends SollolError {
  constructor(message: string) {
    super(message, ExitCode.USAGE)
  }
}

export function validateTestModelOptions(options: TestModelOptions): TestModelOptions {
  const positive = (name: string, value: number, max: number): void => {
    if (!Number.isInteger(value) || value < 1 || value > max)
      throw new TestModelOptionError(`Expected --${name} to be an integer 1-${max}, got \`${value}\``)
  }
  positive('layers', options.layers, 512)
  positive('embd', options.embd, 16384)
  positive('ff', options.ff, 65536)
  positive('heads', options.heads, 256)
  positive('seed', options.seed + 1, 2 ** 32)
  if (options.embd % options.heads !== 0 || (options.embd / options.heads) % 2 !== 0) {
    throw new TestModelOptionError(`Expected --embd to be a multiple of 2 x heads (${2 * options.heads}), got \`${options.embd}\``)
  }
  if (!Object.hasOwn(TEST_WEIGHT_TYPES, options.type))
    throw new TestModelOptionError(
      `Expected --type to be one of ${Object.keys(TEST_WEIGHT_TYPES).join(', ')}, got \`${String(options.type)}\``
    )
  if (options.arch !== undefined && !(TEST_ARCHITECTURES as readonly string[]).includes(options.arch))
    throw new TestModelOptionError(`Expected --arch to be one of ${TEST_ARCHITECTURES.join(', ')}, got \`${String(options.arch)}\``)
  if (options.arch === 'deci' && (options.heads % 4 !== 0 || options.ff % 2 !== 0))
    throw new TestModelOptionError(
      `Expected --heads to be a multiple of 4 and --ff a multiple of 2 for deci, got \`${options.heads}\` and \`${options.ff}\``
    )
  if (options.arch === 'qwen3moe' && options.ff % TEST_MOE.used !== 0)
    throw new TestModelOptionError(`Expected --ff to be a multiple of ${TEST_MOE.used} for qwen3moe, got \`${options.ff}\``)
  const block = weightTypeBlock(options.type)
  // every matrix row of a layer is embd or ff wide (deci: ff / 2, qwen3moe: ff / 2 per expert)
  const narrowestFf = options.arch === 'deci' || options.arch === 'qwen3moe' ? options.ff / 2 : options.ff
  if (options.embd % block !== 0 || narrowestFf % block !== 0)
    throw new TestModelOptionError(
      `Expected --embd and --ff${narrowestFf !== options.ff ? ' / 2' : ''} to be multiples of ${block} for ${options.type} (its block), got \`${options.embd}\` and \`${options.ff}\``
    )
  return options
}

const WORDS = [
  'the',
  'of',
  'and',
  'to',
  'in',
  'is',
  'it',
  'that',
  'for',
  'on',
  'with',
  'as',
  'was',
  'at',
  'by',
  'be',
  'this',
  'from',
  'or',
  'an',
  'are',
  'not',
  'but',
  'have',
  'all',
  'can',
  'one',
  'will',
  'more',
  'when',
  'there',
  'which',
  'their',
  'time',
  'about',
  'up',
  'out',
  'so',
  'what',
  'some',
  'into',
  'them',
  'other',
  'than',
  'then',
  'now',
  'only',
  'its',
  'over',
  'also',
  'new',
  'after',
  'first',
  'two',
  'way',
  'many',
  'these',
  'may',
  'like',
  'use',
  'each',
  'how',
  'our',
  'work',
  'well',
  'even',
  'back',
  'good',
  'any',
  'through',
  'very',
  'where',
  'most',
  'after',
  'model',
  'layer',
  'node',
  'cluster',
  'machine',
  'memory',
  'speed',
  'token',
  'server',
  'mesh',
  'agent',
  'network',
  'light',
  'river',
  'stone',
  'green',
  'blue',
  'red',
  'small',
  'large',
  'quick',
  'slow',
  'bright',
  'quiet',
  'north',
  'south',
  'east',
  'west',
  'hello',
  'world',
  'once',
  'upon',
  'story',
  'long',
  'ago',
  'far',
  'away',
  'land',
  'sea',
  'sky',
  'tree',
  'house'
]

interface VocabEntry {
  readonly text: string
  readonly score: number
  readonly type: number
}

// llama.cpp token types
const NORMAL = 1
const UNKNOWN = 2
const CONTROL = 3
const BYTE = 6

/** `<unk>`, `<s>`, `</s>`, 256 byte tokens, single characters, then words (with SentencePiece's `▁` for a leading space). */
export function testVocabulary(): VocabEntry[] {
  const vocab: VocabEntry[] = [
    { text: '<unk>', score: 0, type: UNKNOWN },
    { text: '<s>', score: 0, type: CONTROL },
    { text: '</s>', score: 0, type: CONTROL }
  ]
  for (let b = 0; b < 256; b++) vocab.push({ text: `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`, score: 0, type: BYTE })
  const seen = new Set<string>()
  const add = (text: string, score: number): void => {
    if (seen.has(text)) return
    seen.add(text)
    vocab.push({ text, score, type: NORMAL })
  }
  add('▁', -1)
  for (const c of "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?'-") add(c, -2)
  WORDS.forEach((word, i) => add(`▁${word}`, -3 - i / 1000))
  return vocab
}

/** Re-exported: the PRNG lives with the pure core (simulations use it too). */
export { seededRandom }

/** Gaussian values by Box-Muller from a seed derived from the model seed and the tensor index. */
function normalValues(count: number, std: number, seed: number): Float32Array {
  const random = seededRandom(seed)
  const out = new Float32Array(count)
  for (let i = 0; i < count; i += 2) {
    const u = Math.max(random(), 1e-12)
    const v = random()
    const r = Math.sqrt(-2 * Math.log(u)) * std
    out[i] = r * Math.cos(2 * Math.PI * v)
    if (i + 1 < count) out[i + 1] = r * Math.sin(2 * Math.PI * v)
  }
  return out
}

export interface TestModel {
  readonly metadata: Map<string, MetadataEntry>
  readonly tensors: TensorSpec[]
}

export function buildTestModel(options: TestModelOptions = DEFAULT_TEST_MODEL): TestModel {
  const o = validateTestModelOptions(options)
  const vocab = testVocabulary()
  const headDim = o.embd / o.heads
  const weightType = TEST_WEIGHT_TYPES[o.type]
  // a quantized model keeps its embeddings in f16 (get_rows of any type works, but f16 is what files have)
  const embeddingType = QUANTIZED_LAYOUTS.has(weightType) ? TensorType.F16 : weightType
  const u32 = (value: number): MetadataEntry => ({ type: ValueType.UINT32, value })
  const suppressed = vocab.flatMap((entry, id) => (entry.type === BYTE || entry.type === UNKNOWN ? [id] : []))

  const arch = o.arch ?? 'llama'
  const a = (key: string): string => `${arch}.${key}`
  const deci = arch === 'deci' ? deciLayerShapes(o.layers, o.heads, o.ff) : undefined
  const u32s = (value: number[]): MetadataEntry => ({ type: ValueType.ARRAY, itemType: ValueType.UINT32, value })
  const metadata = new Map<string, MetadataEntry>([
    ['general.architecture', { type: ValueType.STRING, value: arch }],
    ['general.name', { type: ValueType.STRING, value: `sollol-test-${arch === 'llama' ? '' : `${arch}-`}${o.layers}x${o.embd}-${o.type}` }],
    ['general.file_type', u32(FILE_TYPES[o.type])],
    [a('context_length'), u32(o.contextLength)],
    [a('embedding_length'), u32(o.embd)],
    [a('block_count'), u32(o.layers)],
    [a('feed_forward_length'), deci !== undefined ? u32s(deci.ff) : u32(o.ff)],
    [a('attention.head_count'), u32(o.heads)],
    [a('attention.head_count_kv'), deci !== undefined ? u32s(deci.kvHeads) : u32(o.heads)],
    [a('attention.layer_norm_rms_epsilon'), { type: ValueType.FLOAT32, value: 1e-5 }],
    [a('rope.dimension_count'), u32(headDim)],
    [a('vocab_size'), u32(vocab.length)],
    ...(arch === 'gemma3'
      ? ([
          [a('attention.key_length'), u32(headDim)],
          [a('attention.value_length'), u32(headDim)],
          [a('attention.sliding_window'), u32(TEST_SLIDING_WINDOW)]
        ] as const)
      : []),
    ...(arch === 'qwen3moe'
      ? ([
          [a('expert_count'), u32(TEST_MOE.experts)],
          [a('expert_used_count'), u32(TEST_MOE.used)],
          [a('expert_feed_forward_length'), u32(o.ff / TEST_MOE.used)]
        ] as const)
      : []),
    ['tokenizer.ggml.model', { type: ValueType.STRING, value: 'llama' }],
    ['tokenizer.ggml.tokens', { type: ValueType.ARRAY, itemType: ValueType.STRING, value: vocab.map((v) => v.text) }],
    ['tokenizer.ggml.scores', { type: ValueType.ARRAY, itemType: ValueType.FLOAT32, value: vocab.map((v) => v.score) }],
    ['tokenizer.ggml.token_type', { type: ValueType.ARRAY, itemType: ValueType.INT32, value: vocab.map((v) => v.type) }],
    ['tokenizer.ggml.unknown_token_id', u32(0)],
    ['tokenizer.ggml.bos_token_id', u32(1)],
    ['tokenizer.ggml.eos_token_id', u32(2)],
    // Random weights can emit lone bytes that are not valid UTF-8, which llama-server answers with HTTP 500.
    ['tokenizer.ggml.suppress_tokens', { type: ValueType.ARRAY, itemType: ValueType.INT32, value: suppressed }]
  ])

  let tensorSeed = o.seed >>> 0
  const tensors: TensorSpec[] = []
  const random = (name: string, shape: number[], type = weightType): void => {
    const seed = (tensorSeed = (Math.imul(tensorSeed, 1664525) + 1013904223) >>> 0)
    const count = shape.reduce((a, b) => a * b, 1)
    tensors.push({ name, shape, type, seed, values: () => normalValues(count, o.weightStd, seed) })
  }
  const ones = (name: string, length: number): void => {
    tensors.push({ name, shape: [length], type: TensorType.F32, values: () => new Float32Array(length).fill(1) })
  }

  random('token_embd.weight', [o.embd, vocab.length], embeddingType)
  ones('output_norm.weight', o.embd)
  for (let layer = 0; layer < o.layers; layer++) {
    const p = `blk.${layer}.`
    const kvWidth = (deci?.kvHeads[layer] ?? o.heads) * headDim
    const ff = deci?.ff[layer] ?? o.ff
    ones(`${p}attn_norm.weight`, o.embd)
    if (kvWidth > 0) {
      random(`${p}attn_q.weight`, [o.embd, o.embd])
      random(`${p}attn_k.weight`, [o.embd, kvWidth])
      random(`${p}attn_v.weight`, [o.embd, kvWidth])
    }
    if (arch === 'qwen2') for (const t of ['q', 'k', 'v']) random(`${p}attn_${t}.bias`, [o.embd], TensorType.F32)
    if (arch === 'qwen3' || arch === 'qwen3moe' || arch === 'gemma3') {
      ones(`${p}attn_q_norm.weight`, headDim)
      ones(`${p}attn_k_norm.weight`, headDim)
    }
    random(`${p}attn_output.weight`, [o.embd, o.embd])
    if (arch === 'gemma3') ones(`${p}post_attention_norm.weight`, o.embd)
    ones(`${p}ffn_norm.weight`, o.embd)
    if (arch === 'qwen3moe') {
      const expertFf = o.ff / TEST_MOE.used
      random(`${p}ffn_gate_inp.weight`, [o.embd, TEST_MOE.experts], TensorType.F32)
      random(`${p}ffn_gate_exps.weight`, [o.embd, expertFf, TEST_MOE.experts])
      random(`${p}ffn_up_exps.weight`, [o.embd, expertFf, TEST_MOE.experts])
      random(`${p}ffn_down_exps.weight`, [expertFf, o.embd, TEST_MOE.experts])
    } else {
      random(`${p}ffn_gate.weight`, [o.embd, ff])
      random(`${p}ffn_up.weight`, [o.embd, ff])
      random(`${p}ffn_down.weight`, [ff, o.embd])
    }
    if (arch === 'gemma3') ones(`${p}post_ffw_norm.weight`, o.embd)
  }
  return { metadata, tensors }
}

/** Writes the model to `path` and returns the file size in bytes. */
export function writeTestModel(path: string, options: TestModelOptions = DEFAULT_TEST_MODEL): number {
  const model = buildTestModel(options)
  return writeGguf(path, model.metadata, model.tensors)
}

/**
 * Writes the model as a split set, as `llama-gguf-split` would: `<prefix>-00001-of-0000N.gguf`...; the first
 * shard has the metadata, each shard the split keys and a contiguous share of the tensors. Returns the paths.
 */
export function writeSplitTestModel(prefix: string, shards: number, options: TestModelOptions = DEFAULT_TEST_MODEL): string[] {
  const model = buildTestModel(options)
  const per = Math.ceil(model.tensors.length / shards)
  const paths: string[] = []
  for (let i = 0; i < shards; i++) {
    const tensors = model.tensors.slice(i * per, (i + 1) * per)
    const split = new Map<string, MetadataEntry>([
      ['split.no', { type: ValueType.UINT16, value: i }],
      ['split.count', { type: ValueType.UINT16, value: shards }],
      ['split.tensors.count', { type: ValueType.INT32, value: model.tensors.length }]
    ])
    const metadata = i === 0 ? new Map([...model.metadata, ...split]) : split
    const path = `${prefix}-${String(i + 1).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.gguf`
    writeGguf(path, metadata, tensors)
    paths.push(path)
  }
  return paths
}
