/**
 * The cost model's parts that are not the layer arithmetic (that is in planner.ts): what a network hop
 * costs per token, and when a better plan is worth the reload it takes. One module, used by the
 * coordinator and by `sollol-agent plan`, so a dry run prices a cluster the way the coordinator does.
 */

const GIB = 2 ** 30

/** llama-server's own rpc-server: a loopback round trip per token. */
export const LOCAL_HOP_SECONDS = 0.0002
/** Fixed cost of a LAN hop besides its round trip (serialising the graph inputs and outputs). */
const LAN_HOP_OVERHEAD_SECONDS = 0.0004
/** Round trip assumed until one is measured: a wired LAN (0.2-0.5 ms, llama-cpp-rpc notes). */
export const DEFAULT_RTT_MS = 0.5

/**
 * Per-token cost of using a node at all: decoding makes one round trip per token per rpc-server
 * (measured: llama-cpp-rpc notes, "Round trips per token"), priced at twice the RTT (request and reply
 * each wait for the link) plus a fixed overhead.
 */
export function hopSeconds(isHost: boolean, rttMs: number | undefined): number {
  if (isHost) return LOCAL_HOP_SECONDS
  return LAN_HOP_OVERHEAD_SECONDS + (2 * (rttMs ?? DEFAULT_RTT_MS)) / 1000
}

/** A wired gigabit LAN, for the logits a remote output layer sends back each token. */
export const LAN_BYTES_PER_SECOND = 125e6

/**
 * Per-token cost of where the output layer runs besides its compute: its logits (vocabulary x f32) cross
 * the LAN back to llama-server unless it runs on llama-server's own machine (32k vocabulary: 1 ms a token).
 */
export function logitsSeconds(isHost: boolean, vocabSize: number): number {
  return isHost ? 0 : (vocabSize * 4) / LAN_BYTES_PER_SECOND
}

/** How far apart two best-of-3 decode times must be to count as a difference (their run-to-run spread). */
export const FIT_RESOLUTION = 0.05

/** One calibration measurement: the layer bytes a model put on the device and its decode time per token. */
export interface DecodeSample {
  readonly layerBytes: number
  readonly secondsPerToken: number
}

export interface TokenCost {
  /** The per-byte cost: what one more GiB of layers adds to a token. */
  readonly secondsPerGiB: number
  /** What every token costs whatever the device holds. */
  readonly fixedSecondsPerToken: number
}

/**
 * Splits a device's decode time into a fixed and a per-byte part from two model sizes (t = a + b x bytes).
 * One size alone folds the fixed part into the per-byte price: on a GPU, where a small model's token is
 * mostly launch and round-trip time, that priced an H200 like a CPU (0.07 s/GiB, where its memory moves a
 * GiB in 0.2 ms). A difference below FIT_RESOLUTION of the small model's time is noise: the per-byte cost
 * is then taken as that bound (a GPU: under what two sizes can tell apart, so priced as fast as they can
 * show). A negative fixed part (the small model sat in a CPU cache and ran faster per byte than a large
 * one will) falls back to the larger model's average, no fixed part: the price a large model will see. Pure.
 */
export function fitTokenCost(small: DecodeSample, large: DecodeSample): TokenCost {
  const average = { secondsPerGiB: (large.secondsPerToken / large.layerBytes) * GIB, fixedSecondsPerToken: 0 }
  const extraBytes = large.layerBytes - small.layerBytes
  if (!(extraBytes > 0)) return average
  const resolution = (FIT_RESOLUTION * small.secondsPerToken) / extraBytes
  const perByte = Math.max((large.secondsPerToken - small.secondsPerToken) / extraBytes, resolution)
  const fixed = small.secondsPerToken - perByte * small.layerBytes
  if (!(fixed >= 0)) return average
  return { secondsPerGiB: perByte * GIB, fixedSecondsPerToken: fixed }
}

export interface ReloadCase {
  readonly currentSecondsPerToken: number
  readonly desiredSecondsPerToken: number
  /** How long the reload would leave the cluster without an answer (the last measured load time). */
  readonly reloadSeconds: number
}

/** The serving time a re-plan must pay back over, and by how much it must beat staying put. */
export const RELOAD_HORIZON_SECONDS = 600
export const RELOAD_MIN_GAIN = 0.1

/**
 * Whether switching plans pays: over the next RELOAD_HORIZON_SECONDS of decoding, the desired plan, which
 * first spends `reloadSeconds` loading, must produce at least RELOAD_MIN_GAIN more tokens than the
 * current one. With a free reload this is the 10 % hysteresis that keeps measurement noise from
 * restarting llama-server; a reload of minutes needs a much larger gain (a 2-minute load: 1.375x faster).
 */
export function reloadPays(c: ReloadCase): boolean {
  if (!(c.desiredSecondsPerToken > 0) || !(c.currentSecondsPerToken > 0)) return false
  const stay = RELOAD_HORIZON_SECONDS / c.currentSecondsPerToken
  const move = Math.max(0, RELOAD_HORIZON_SECONDS - c.reloadSeconds) / c.desiredSecondsPerToken
  return move >= stay * (1 + RELOAD_MIN_GAIN)
}
