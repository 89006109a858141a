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

/** A quantized V cache needs flash attention in llama.cpp (it refuses to start without it). */
export const needsFlashAttention = (types: KvCacheTypes): boolean => !['f32', 'f16', 'bf16'].includes(types.v)

/** Bytes one token of context takes in one layer's KV cache: kv heads x (key + value widths), each in its type. */
export function kvBytesPerToken(
  model: { readonly headCountKv: number; readonly keyLength: number; readonly valueLength: number },
  types: KvCacheTypes = DEFAULT_KV_CACHE_TYPES
): number {
  // every KvCacheType is in the table; f32 would be the safe side if one were not
  const bytes = (values: number, type: KvCacheType): number => ggmlTypeBytes(type, values) ?? values * 4
  return bytes(model.headCountKv * model.keyLength, types.k) + bytes(model.headCountKv * model.valueLength, types.v)
}
