/**
 * The ggml RPC wire protocol, just the read-only commands a probe needs. Pure encode/decode.
 * Request: `cmd u8 | payload_len u64 | payload`; reply: `payload_len u64 | payload`, little-endian.
 * Source: ggml/src/ggml-rpc/ggml-rpc.cpp of llama.cpp v0.4.0 (protocol 6.0.0).
 */
export const RpcCommand = {
  HELLO: 14,
  DEVICE_COUNT: 15,
  GET_DEVICE_MEMORY: 11
} as const

/** Bytes of connection capabilities in a v6 HELLO; all zero asks for plain TCP. */
export const HELLO_CAPS_BYTES = 24
const HELLO_REPLY_BYTES = 4 + HELLO_CAPS_BYTES
/** Before protocol 6 the HELLO had no payload and its reply was `major, minor, patch`. */
const LEGACY_HELLO_REPLY_BYTES = 3

export interface RpcVersion {
  readonly major: number
  readonly minor: number
  readonly patch: number
}

export function formatRpcVersion(v: RpcVersion): string {
  return `${v.major}.${v.minor}.${v.patch}`
}

/** llama.cpp's own rule: the major must match and the server's minor must not be newer than the client's. */
/** llama.cpp's compatibility rule; it lives with the pure core, where the planner uses it too. */
export { isCompatibleRpcVersion } from '@sollol/core'

export function encodeRequest(command: number, payload: Uint8Array = new Uint8Array(0)): Buffer {
  const out = Buffer.alloc(1 + 8 + payload.length)
  out.writeUInt8(command, 0)
  out.writeBigUInt64LE(BigInt(payload.length), 1)
  out.set(payload, 9)
  return out
}

export const encodeHello = (): Buffer => encodeRequest(RpcCommand.HELLO, new Uint8Array(HELLO_CAPS_BYTES))
export const encodeLegacyHello = (): Buffer => encodeRequest(RpcCommand.HELLO)
export const encodeDeviceCount = (): Buffer => encodeRequest(RpcCommand.DEVICE_COUNT)
export function encodeGetDeviceMemory(device: number): Buffer {
  const payload = Buffer.alloc(4)
  payload.writeUInt32LE(device)
  return encodeRequest(RpcCommand.GET_DEVICE_MEMORY, payload)
}

export class RpcProtocolError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'RpcProtocolError'
  }
}

/**
 * Splits one complete reply off the front of `buffer`. Returns undefined while incomplete.
 * Throws when the announced length is not the one the command has (a different protocol).
 */
export function takeReply(buffer: Buffer, expectedPayloadBytes: number): { payload: Buffer; rest: Buffer } | undefined {
  if (buffer.length < 8) return undefined
  const length = buffer.readBigUInt64LE(0)
  if (length !== BigInt(expectedPayloadBytes)) {
    throw new RpcProtocolError(`Expected a reply of ${expectedPayloadBytes} bytes, got one announcing ${length} bytes`)
  }
  if (buffer.length < 8 + expectedPayloadBytes) return undefined
  return { payload: buffer.subarray(8, 8 + expectedPayloadBytes), rest: buffer.subarray(8 + expectedPayloadBytes) }
}

export const HELLO_REPLY = HELLO_REPLY_BYTES
export const LEGACY_HELLO_REPLY = LEGACY_HELLO_REPLY_BYTES
export const DEVICE_COUNT_REPLY = 4
export const DEVICE_MEMORY_REPLY = 16

export function decodeHello(payload: Buffer): RpcVersion {
  return { major: payload.readUInt8(0), minor: payload.readUInt8(1), patch: payload.readUInt8(2) }
}

export function decodeDeviceCount(payload: Buffer): number {
  return payload.readUInt32LE(0)
}

export function decodeDeviceMemory(payload: Buffer): { free: number; total: number } {
  return { free: Number(payload.readBigUInt64LE(0)), total: Number(payload.readBigUInt64LE(8)) }
}
