/**
 * The KV cache's element types (llama-server's `--cache-type-k/v`) and what a token of context costs per
 * layer with them. Pure. Sizes from ggml's type table (ggml-types.ts).
 */
import { ggmlTypeBytes } from './ggml-types.js'

export const KV_CACHE_TYPES = ['f32', 'f16', 'bf16', 'q8_0', 'q5_1', 'q5_0', 'q4_1', 'q4_0', 'iq4_nl'] as const
export type KvCacheType = (typeof KV_CACHE_TYPES)[number]

export interface KvCacheTypes {
  readonly k: KvCacheType
  readonly v: KvCacheType
}

/** llama-server's default: both f16. */
export const DEFAULT_KV_CACHE_TYPES: KvCacheTypes = { k: 'f16', v: 'f16' }

/** Bytes one token of context takes in one layer's KV cache: kv heads x (key + value widths), each in its type. */
export function kvBytesPerToken(
  model: { readonly headCountKv: number; readonly keyLength: number; readonly valueLength: number },
  types: KvCacheTypes = DEFAULT_KV_CACHE_TYPES
): number {
  // every KvCacheType is in the table; f32 would be the safe side if one were not
  const bytes = (values: number, type: KvCacheType): number => ggmlTypeBytes(type, values) ?? values * 4
  return bytes(model.headCountKv * model.keyLength, types.k) + bytes(model.headCountKv * model.valueLength, types.v)
}

/**
 * Bytes a token takes in each layer's KV cache when the model has a KV head count per layer (a layer with
 * none keeps no cache); undefined when every layer has the same. Pure.
 */
export function kvBytesPerTokenByLayer(
  model: { readonly headCountKvPerLayer?: readonly number[] | null; readonly keyLength: number; readonly valueLength: number },
  types: KvCacheTypes = DEFAULT_KV_CACHE_TYPES
): number[] | undefined {
  const heads = model.headCountKvPerLayer
  if (heads === null || heads === undefined) return undefined
  return heads.map((headCountKv) => kvBytesPerToken({ headCountKv, keyLength: model.keyLength, valueLength: model.valueLength }, types))
}

/** llama-server's slots when not told (`--parallel` auto): 4, sharing one unified KV cache. */
export const DEFAULT_PARALLEL_SLOTS = 4
/** llama.cpp's micro-batch (n_ubatch) default. */
const UBATCH = 512

/** Sliding-window attention as llama.cpp runs it: the window (tokens) and which layers use it. */
export interface SlidingWindow {
  readonly window: number
  /** Per layer: true for a sliding-window layer (the others attend to the whole context). */
  readonly layers: readonly boolean[]
}

/**
 * KV cache cells per layer at a context size. A sliding-window layer keeps `window x slots + ubatch` cells
 * (at most the context), rounded up to 256 as llama.cpp pads it (llama-kv-cache-iswa.cpp): gemma3's
 * 5-of-6 layers at a 1024 window and 8192 context hold 4608 cells, not 8192. Pure.
 */
export function kvCellsPerLayer(
  layerCount: number,
  contextSize: number,
  slidingWindow: SlidingWindow | null | undefined,
  slots: number = DEFAULT_PARALLEL_SLOTS
): number[] {
  const swaCells =
    slidingWindow === null || slidingWindow === undefined
      ? contextSize
      : padTo256(Math.min(contextSize, slidingWindow.window * slots + UBATCH))
  return Array.from({ length: layerCount }, (_, il) => (slidingWindow?.layers[il] === true ? swaCells : contextSize))
}

const padTo256 = (n: number): number => Math.ceil(n / 256) * 256
