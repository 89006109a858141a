/**
 * ggml's tensor types as llama.cpp stores them: the id in a GGUF file, the name `--cache-type-k/v` takes,
 * and the block layout (values per block, bytes per block; ggml.c's type traits). One table for the GGUF
 * reader (how long a tensor's data is) and the KV cache (what a token costs). Pure.
 */
const GGML_TYPES: ReadonlyArray<{ readonly id: number; readonly name: string; readonly values: number; readonly bytes: number }> = [
  { id: 0, name: 'f32', values: 1, bytes: 4 },
  { id: 1, name: 'f16', values: 1, bytes: 2 },
  { id: 2, name: 'q4_0', values: 32, bytes: 18 },
  { id: 3, name: 'q4_1', values: 32, bytes: 20 },
  { id: 6, name: 'q5_0', values: 32, bytes: 22 },
  { id: 7, name: 'q5_1', values: 32, bytes: 24 },
  { id: 8, name: 'q8_0', values: 32, bytes: 34 },
  { id: 10, name: 'q2_k', values: 256, bytes: 84 },
  { id: 11, name: 'q3_k', values: 256, bytes: 110 },
  { id: 12, name: 'q4_k', values: 256, bytes: 144 },
  { id: 13, name: 'q5_k', values: 256, bytes: 176 },
  { id: 14, name: 'q6_k', values: 256, bytes: 210 },
  { id: 20, name: 'iq4_nl', values: 32, bytes: 18 },
  { id: 30, name: 'bf16', values: 1, bytes: 2 }
]

/** Bytes `values` values take in ggml type `type` (its GGUF id or its name); undefined for a type not listed. */
export function ggmlTypeBytes(type: number | string, values: number): number | undefined {
  const t = GGML_TYPES.find((x) => (typeof type === 'number' ? x.id === type : x.name === type))
  return t === undefined ? undefined : Math.ceil(values / t.values) * t.bytes
}

/** The name of a ggml type by its GGUF id (`q4_k`), or undefined for one not listed. */
export function ggmlTypeName(id: number): string | undefined {
  return GGML_TYPES.find((x) => x.id === id)?.name
}
