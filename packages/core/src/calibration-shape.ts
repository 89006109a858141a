/**
 * What a device is calibrated with for a given model: generated layers of that model's width and weight
 * type, enough of them that they do not sit in the CPU's last-level cache, in two sizes (the fit of
 * cost-model.ts). The agent's first calibration uses small generic f32 layers (it does not know the
 * model yet); for a model that outgrows a cache those price a CPU faster and a GPU slower than the model
 * runs, so each agent measures again in the model's shape once it knows it. Pure.
 */
import { ggmlTypeBytes } from './ggml-types.js'

/** The weight types a calibration model can be generated in (the generator's, @sollol/gguf test-model.ts). */
export const CALIBRATION_TYPES = ['f32', 'f16', 'q4_0', 'q4_1', 'q5_0', 'q5_1', 'q8_0', 'q2_k', 'q3_k', 'q4_k', 'q5_k', 'q6_k'] as const
export type CalibrationType = (typeof CALIBRATION_TYPES)[number]

/** What a model holder announces of its model's layers (announcement.ts, models[].shape). */
export interface ModelShape {
  readonly embd: number
  /** The widest feed-forward of a layer (a mixture of experts: its used experts together). */
  readonly ff: number
  /** The ggml type that holds most of the layers' bytes (`q4_k`), or `[id]` for one not named. */
  readonly type: string
  /** All layers' weight bytes. */
  readonly layerBytes: number
  /** How many layers (informative: status and logs; older agents omit it). */
  readonly layers?: number | undefined
}

export interface CalibrationShape {
  /** Names the shape in caches and announcements: `4096x14336-q4_k`. */
  readonly key: string
  readonly embd: number
  readonly ff: number
  /** Of 128 (a head size every backend's flash attention has). */
  readonly heads: number
  readonly type: CalibrationType
  readonly smallLayers: number
  readonly largeLayers: number
  /** Weight bytes of one generated layer. */
  readonly layerBytes: number
}

/**
 * A model whose layers take less than this runs from the same caches as the generic calibration models
 * (27 and 81 MB): measuring again in its shape would tell little. Above it a model's working set outgrows
 * any CPU's last-level cache here (32 MiB on the test machines; the largest desktop parts have ~100 MiB).
 */
export const SHAPED_CALIBRATION_ABOVE_BYTES = 128 * 2 ** 20
/** The small calibration model's layers hold at least this much, and twice the last-level cache. */
const SMALL_WORKING_SET_BYTES = 64 * 2 ** 20
/**
 * The large model holds at most this much, and at most OFFER_SHARE of what the device offers (it is
 * measured before any plan uses the device, so its offer is free then; the rest is llama.cpp's buffers).
 */
const LARGE_MODEL_MAX_BYTES = 1.5 * 2 ** 30
const OFFER_SHARE = 0.75
const HEAD_SIZE = 128
/** Every block size divides it, and so does HEAD_SIZE: widths are rounded up to it. */
const WIDTH_STEP = 256

/** A type the generator cannot write becomes the one nearest it in bytes per weight (bf16 -> f16, iq4_nl -> q4_0). */
export function calibrationTypeOf(type: string): CalibrationType {
  if ((CALIBRATION_TYPES as readonly string[]).includes(type)) return type as CalibrationType
  const bitsOf = (t: string): number => ((ggmlTypeBytes(t, 256) ?? 0) * 8) / 256
  if (ggmlTypeBytes(type, 256) === undefined) return 'q4_k' // unnamed: an i-quant most often, of k-quant super-blocks
  // the nearest in bits per weight; a tie goes to the first listed (iq4_nl: q4_0, of the same blocks of 32)
  return CALIBRATION_TYPES.reduce((best, t) => (Math.abs(bitsOf(t) - bitsOf(type)) < Math.abs(bitsOf(best) - bitsOf(type)) ? t : best))
}

const roundUp = (n: number, step: number): number => Math.max(step, Math.ceil(n / step) * step)

/**
 * The calibration models for a model of this shape on a device with `cacheBytes` of last-level cache and
 * `offerBytes` offered; null when the generic calibration stands for it (a model under
 * SHAPED_CALIBRATION_ABOVE_BYTES) or when not even one generated layer fits three quarters of the offer
 * (such a node holds a layer or two at most: see needsModelSpeed).
 */
export function calibrationShapeOf(model: ModelShape, device: { cacheBytes: number; offerBytes: number }): CalibrationShape | null {
  const key = calibrationKeyOf(model) // null: a model under SHAPED_CALIBRATION_ABOVE_BYTES
  if (key === null) return null
  const type = calibrationTypeOf(model.type)
  const embd = roundUp(model.embd, WIDTH_STEP)
  const ff = roundUp(model.ff, WIDTH_STEP)
  // q, k, v, output and three feed-forward matrices (no grouped KV heads: the price is per byte anyway)
  const layerBytes = (ggmlTypeBytes(type, embd * embd) ?? 0) * 4 + (ggmlTypeBytes(type, embd * ff) ?? 0) * 3 + embd * 8
  const fits = Math.floor(Math.min(LARGE_MODEL_MAX_BYTES, device.offerBytes * OFFER_SHARE) / layerBytes)
  if (fits < 1) return null
  const wanted = Math.ceil(Math.max(SMALL_WORKING_SET_BYTES, 2 * device.cacheBytes) / layerBytes)
  const smallLayers = fits >= 2 ? Math.min(wanted, Math.max(1, Math.floor(fits / 3))) : 1
  const largeLayers = Math.min(3 * smallLayers, fits)
  return { key, embd, ff, heads: embd / HEAD_SIZE, type, smallLayers, largeLayers, layerBytes }
}

/** The key of a model's calibration shape (`4096x14336-q4_k`), the same on every node; null: a small model. */
export function calibrationKeyOf(model: ModelShape): string | null {
  if (!(model.layerBytes > SHAPED_CALIBRATION_ABOVE_BYTES)) return null
  return `${roundUp(model.embd, WIDTH_STEP)}x${roundUp(model.ff, WIDTH_STEP)}-${calibrationTypeOf(model.type)}`
}

interface SpeedLike {
  readonly secondsPerGiB: number
  readonly fixedSecondsPerToken?: number | undefined
  readonly promptSecondsPerGiB?: number | undefined
}

interface NodeSpeeds<S extends SpeedLike, D extends { readonly speed?: S | null | undefined }> {
  readonly speed: S | null
  /** In the model's shape: the node's and its devices' (in its rpc-server's order, as `devices`). */
  readonly modelSpeed?: { readonly shape: string; readonly speed: S; readonly devices: ReadonlyArray<S | null> } | null | undefined
  readonly devices: readonly D[]
}

/**
 * The calibration a plan is priced with: the model's shape key when every candidate node announced a
 * measurement in that shape, else null (every node's generic one). One basis for all: a node priced in the
 * model's shape beside one priced with the small generic models would be compared on two scales (a CPU
 * looks up to 1.7x faster on the generic models than on a 2048-wide q4_k model). Pure.
 */
export function shapedPricing(model: ModelShape | undefined, candidates: readonly Candidate[]): string | null {
  const key = model === undefined ? null : calibrationKeyOf(model)
  if (model === undefined || key === null) return null
  const needed = candidates.filter((a) => needsModelSpeed(model, a))
  if (needed.length === 0) return null
  return needed.every((a) => a.modelSpeed?.shape === key) ? key : null
}

interface Candidate {
  readonly memoryBudget: number
  readonly modelSpeed?: { readonly shape: string } | null | undefined
}

/**
 * Whether a node's price in the model's shape is needed to plan with it: exactly when the node measures
 * one (calibrationShapeOf with its offer: a generated layer fits three quarters of it). One that cannot
 * holds at most a layer or two, and is priced with its generic measurement. Pure.
 */
export function needsModelSpeed(model: ModelShape, node: { readonly memoryBudget: number }): boolean {
  return calibrationShapeOf(model, { cacheBytes: 0, offerBytes: node.memoryBudget }) !== null
}

/** A node's speed and its devices' on that basis (shapedPricing). Pure. */
export function planningSpeeds<S extends SpeedLike, D extends { readonly speed?: S | null | undefined }>(
  a: NodeSpeeds<S, D>,
  pricedWith: string | null
): { speed: S | null; devices: D[] } {
  const shaped = pricedWith !== null && a.modelSpeed?.shape === pricedWith ? a.modelSpeed : undefined
  if (shaped === undefined) return { speed: a.speed, devices: [...a.devices] }
  return { speed: shaped.speed, devices: a.devices.map((d, i) => ({ ...d, speed: shaped.devices[i] ?? null })) }
}

/** The shape a model holder announces, from its file's header (model-info's fields). Pure. */
export function modelShapeOf(info: {
  readonly embeddingLength: number
  readonly feedForwardWidth?: number | undefined
  readonly layerWeightType: string
  readonly layerWeightBytes: readonly number[]
}): ModelShape {
  return {
    embd: info.embeddingLength,
    ff: info.feedForwardWidth ?? 4 * info.embeddingLength,
    type: info.layerWeightType,
    layerBytes: info.layerWeightBytes.reduce((a, b) => a + b, 0),
    layers: info.layerWeightBytes.length
  }
}
