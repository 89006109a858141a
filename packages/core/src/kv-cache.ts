/**
 * The KV cache's element types (llama-server's `--cache-type-k/v`) and what a token of context costs per
 * layer with them. Pure. Quantized types store blocks of 32 values (ggml's type traits).
 */
export const KV_CACHE_TYPES = ['f32', 'f16', 'bf16', 'q8_0', 'q5_1', 'q5_0', 'q4_1', 'q4_0', 'iq4_nl'] as const
export type KvCacheType = (typeof KV_CACHE_TYPES)[number]

/** [values per block, bytes per block]. */
const BLOCKS: Record<KvCacheType, readonly [number, number]> = {
  f32: [1, 4],
  f16: [1, 2],
  bf16: [1, 2],
  q8_0: [32, 34],
  q5_1: [32, 24],
  q5_0: [32, 22],
  q4_1: [32, 20],
  q4_0: [32, 18],
  iq4_nl: [32, 18]
}

export interface KvCacheTypes {
  readonly k: KvCacheType
  readonly v: KvCacheType
}

/** llama-server's default: both f16. */
export const DEFAULT_KV_CACHE_TYPES: KvCacheTypes = { k: 'f16', v: 'f16' }

/** A quantized V cache needs flash attention in llama.cpp (it refuses to start without it). */
export const needsFlashAttention = (types: KvCacheTypes): boolean => !['f32', 'f16', 'bf16'].includes(types.v)

/** Bytes one token of context takes in one layer's KV cache: kv heads x (key + value widths), each in its type. */
export function kvBytesPerToken(
  model: { readonly headCountKv: number; readonly keyLength: number; readonly valueLength: number },
  types: KvCacheTypes = DEFAULT_KV_CACHE_TYPES
): number {
  const bytes = (values: number, type: KvCacheType): number => {
    const [per, size] = BLOCKS[type]
    return Math.ceil(values / per) * size
  }
  return bytes(model.headCountKv * model.keyLength, types.k) + bytes(model.headCountKv * model.valueLength, types.v)
}
