/**
 * A minimal GGUF v3 writer: enough for the generated test models (scalars, strings, arrays of them,
 * F32/F16 tensors, and quantized tensors of random blocks: see `QUANTIZED_LAYOUTS`). The header is built in memory; tensor data is streamed by the caller's generator
 * so a 100 MB model never sits in memory twice.
 */
import { closeSync, openSync, writeSync } from 'node:fs'

export const GGUF_ALIGNMENT = 32

export enum ValueType {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12
}

export enum TensorType {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14
}

/**
 * The block of each quantized type (ggml-common.h of the release we build): values and bytes per block, and
 * where its f16 scales sit. A quantized tensor is written as random quants with small finite scales: what
 * a calibration model needs (llama.cpp runs it at a real model's speed, the same kernels over the same
 * bytes), not what a quantizer would make of real weights.
 */
export const QUANTIZED_LAYOUTS: ReadonlyMap<
  TensorType,
  { readonly values: number; readonly bytes: number; readonly scales: readonly number[] }
> = new Map([
  [TensorType.Q4_0, { values: 32, bytes: 18, scales: [0] }],
  [TensorType.Q4_1, { values: 32, bytes: 20, scales: [0, 2] }],
  [TensorType.Q5_0, { values: 32, bytes: 22, scales: [0] }],
  [TensorType.Q5_1, { values: 32, bytes: 24, scales: [0, 2] }],
  [TensorType.Q8_0, { values: 32, bytes: 34, scales: [0] }],
  [TensorType.Q2_K, { values: 256, bytes: 84, scales: [80, 82] }],
  [TensorType.Q3_K, { values: 256, bytes: 110, scales: [108] }],
  [TensorType.Q4_K, { values: 256, bytes: 144, scales: [0, 2] }],
  [TensorType.Q5_K, { values: 256, bytes: 176, scales: [0, 2] }],
  [TensorType.Q6_K, { values: 256, bytes: 210, scales: [208] }]
])

export type MetadataEntry =
  | {
      readonly type: ValueType.UINT16 | ValueType.UINT32 | ValueType.INT32 | ValueType.FLOAT32 | ValueType.BOOL | ValueType.STRING
      readonly value: number | string | boolean
    }
  | {
      readonly type: ValueType.ARRAY
      readonly itemType: ValueType.UINT32 | ValueType.INT32 | ValueType.FLOAT32 | ValueType.STRING
      readonly value: ReadonlyArray<number | string>
    }

export interface TensorSpec {
  readonly name: string
  /** GGUF dimension order: ne0 (the contiguous one) first. */
  readonly shape: readonly number[]
  readonly type: TensorType
  /**
   * Produces the tensor's values in order; called once, when the data is written. A quantized tensor's
   * values are not asked for: its blocks are random, from this seed (see QUANTIZED_LAYOUTS).
   */
  readonly values: () => Float32Array
  readonly seed?: number
}

class ByteWriter {
  private chunks: Buffer[] = []
  length = 0
  push(buf: Buffer): void {
    this.chunks.push(buf)
    this.length += buf.length
  }
  private fixed(bytes: number, write: (b: Buffer) => void): void {
    const b = Buffer.alloc(bytes)
    write(b)
    this.push(b)
  }
  u32(v: number): void {
    this.fixed(4, (b) => b.writeUInt32LE(v))
  }
  i32(v: number): void {
    this.fixed(4, (b) => b.writeInt32LE(v))
  }
  u64(v: number): void {
    this.fixed(8, (b) => b.writeBigUInt64LE(BigInt(v)))
  }
  f32(v: number): void {
    this.fixed(4, (b) => b.writeFloatLE(v))
  }
  u8(v: number): void {
    this.push(Buffer.from([v]))
  }
  str(s: string): void {
    const bytes = Buffer.from(s, 'utf8')
    this.u64(bytes.length)
    this.push(bytes)
  }
  pad(alignment: number): void {
    const rest = this.length % alignment
    if (rest !== 0) this.push(Buffer.alloc(alignment - rest))
  }
  toBuffer(): Buffer {
    return Buffer.concat(this.chunks)
  }
}

function writeScalar(out: ByteWriter, type: ValueType, value: number | string | boolean): void {
  switch (type) {
    case ValueType.UINT16: {
      const b = Buffer.alloc(2)
      b.writeUInt16LE(Number(value))
      out.push(b)
      break
    }
    case ValueType.UINT32:
      out.u32(Number(value))
      break
    case ValueType.INT32:
      out.i32(Number(value))
      break
    case ValueType.FLOAT32:
      out.f32(Number(value))
      break
    case ValueType.BOOL:
      out.u8(value === true ? 1 : 0)
      break
    case ValueType.STRING:
      out.str(String(value))
      break
    default:
      throw new Error(`GGUF writer: unsupported scalar type ${type}`)
  }
}

export function tensorByteLength(spec: Pick<TensorSpec, 'shape' | 'type'>): number {
  const elements = spec.shape.reduce((a, b) => a * b, 1)
  const block = QUANTIZED_LAYOUTS.get(spec.type)
  if (block !== undefined) {
    if ((spec.shape[0] ?? 0) % block.values !== 0)
      throw new Error(`GGUF writer: a row of ${TensorType[spec.type]} holds whole blocks of ${block.values}, got ${spec.shape[0]}`)
    return (elements / block.values) * block.bytes
  }
  return elements * (spec.type === TensorType.F32 ? 4 : 2)
}

const alignUp = (n: number, alignment: number): number => Math.ceil(n / alignment) * alignment

/** Encodes the header: magic, version, metadata, tensor infos, padding up to the data. */
export function encodeHeader(metadata: ReadonlyMap<string, MetadataEntry>, tensors: readonly TensorSpec[]): Buffer {
  const out = new ByteWriter()
  out.u32(0x46554747) // "GGUF" read as a little-endian u32
  out.u32(3)
  out.u64(tensors.length)
  out.u64(metadata.size)
  for (const [key, entry] of metadata) {
    out.str(key)
    out.u32(entry.type)
    if (entry.type === ValueType.ARRAY) {
      out.u32(entry.itemType)
      out.u64(entry.value.length)
      for (const item of entry.value) writeScalar(out, entry.itemType, item)
    } else {
      writeScalar(out, entry.type, entry.value)
    }
  }
  let offset = 0
  for (const tensor of tensors) {
    out.str(tensor.name)
    out.u32(tensor.shape.length)
    for (const dim of tensor.shape) out.u64(dim)
    out.u32(tensor.type)
    out.u64(offset)
    offset = alignUp(offset + tensorByteLength(tensor), GGUF_ALIGNMENT)
  }
  out.pad(GGUF_ALIGNMENT)
  return out.toBuffer()
}

/** IEEE-754 binary16 from a float, rounding to nearest even. */
const scratchFloat = new Float32Array(1)
const scratchBits = new Uint32Array(scratchFloat.buffer)

export function toFloat16Bits(value: number): number {
  scratchFloat[0] = value
  const bits = scratchBits[0] ?? 0
  const sign = (bits >>> 16) & 0x8000
  const exponent = (bits >>> 23) & 0xff
  let mantissa = bits & 0x7fffff
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa !== 0 ? 0x200 : 0)
  let e = exponent - 127 + 15
  if (e >= 0x1f) return sign | 0x7c00
  if (e <= 0) {
    if (e < -10) return sign
    mantissa |= 0x800000
    const shift = 14 - e
    let half = mantissa >> shift
    const rest = mantissa & ((1 << shift) - 1)
    const halfway = 1 << (shift - 1)
    if (rest > halfway || (rest === halfway && (half & 1) === 1)) half++
    return sign | half
  }
  let half = (e << 10) | (mantissa >> 13)
  const rest = mantissa & 0x1fff
  if (rest > 0x1000 || (rest === 0x1000 && (half & 1) === 1)) half++
  e = half >> 10
  return sign | half
}

/** Random blocks of a quantized type, every scale `scale` (finite, so activations stay finite). */
function randomBlocks(spec: TensorSpec, block: { readonly bytes: number; readonly scales: readonly number[] }, scale: number): Buffer {
  const out = Buffer.from(new ArrayBuffer(tensorByteLength(spec))) // its own memory: aligned for the words below
  // xorshift32: a quarter of a gigabyte a second here, where a float per value would take minutes for a big layer
  let x = (spec.seed ?? 1) >>> 0 || 1
  const words = new Uint32Array(out.buffer, out.byteOffset, out.length >>> 2)
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    words[i] = x >>> 0
  }
  for (let i = words.length * 4; i < out.length; i++) out[i] = i & 0xff
  const bits = toFloat16Bits(scale)
  for (let at = 0; at < out.length; at += block.bytes) for (const offset of block.scales) out.writeUInt16LE(bits, at + offset)
  return out
}

/** The scale of a quantized tensor's blocks: quants of up to 127 (q8_0) times this stay below one. */
const QUANT_SCALE = 1 / 256

export function encodeTensorData(spec: TensorSpec): Buffer {
  const block = QUANTIZED_LAYOUTS.get(spec.type)
  if (block !== undefined) return randomBlocks(spec, block, QUANT_SCALE)
  const values = spec.values()
  const expected = spec.shape.reduce((a, b) => a * b, 1)
  if (values.length !== expected) throw new Error(`GGUF writer: tensor ${spec.name} has ${values.length} values, expected ${expected}`)
  if (spec.type === TensorType.F32) return Buffer.from(values.buffer, values.byteOffset, values.byteLength)
  // Uint16Array is host-endian; GGUF is little-endian, as is every host llama.cpp supports here.
  const halves = new Uint16Array(values.length)
  for (let i = 0; i < values.length; i++) halves[i] = toFloat16Bits(values[i] ?? 0)
  return Buffer.from(halves.buffer, halves.byteOffset, halves.byteLength)
}

/** Writes a complete GGUF file. Returns its size in bytes. */
export function writeGguf(path: string, metadata: ReadonlyMap<string, MetadataEntry>, tensors: readonly TensorSpec[]): number {
  const fd = openSync(path, 'w')
  try {
    const header = encodeHeader(metadata, tensors)
    let written = writeSync(fd, header)
    for (const tensor of tensors) {
      const data = encodeTensorData(tensor)
      written += writeSync(fd, data)
      const padding = alignUp(data.length, GGUF_ALIGNMENT) - data.length
      if (padding > 0) written += writeSync(fd, Buffer.alloc(padding))
    }
    return written
  } finally {
    closeSync(fd)
  }
}
