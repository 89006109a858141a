/**
 * The heartbeat on the wire: what a member sends every announce interval to each connected member (see
 * ARCHITECTURE.md, Heartbeats). Sixteen bytes, length-prefixed on the stream: the sender's incarnation and
 * the seq of its latest announcement, big-endian float64 each, both non-negative safe integers.
 */
export const BEAT_BYTES = 16

export function encodeBeat(incarnation: number, seq: number): Uint8Array {
  const bytes = new Uint8Array(BEAT_BYTES)
  const view = new DataView(bytes.buffer)
  view.setFloat64(0, incarnation)
  view.setFloat64(8, seq)
  return bytes
}

export function decodeBeat(bytes: Uint8Array): { incarnation: number; seq: number } | undefined {
  if (bytes.byteLength !== BEAT_BYTES) return undefined
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const incarnation = view.getFloat64(0)
  const seq = view.getFloat64(8)
  const ok = (n: number): boolean => Number.isSafeInteger(n) && n >= 0
  return ok(incarnation) && ok(seq) ? { incarnation, seq } : undefined
}
