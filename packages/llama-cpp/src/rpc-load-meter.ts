/**
 * Reads the request stream a client (llama-server) sends to an rpc-server and counts what a model load
 * moves: the bytes of tensor data (`SET_TENSOR`) and the tensors asked for by hash first
 * (`SET_TENSOR_HASH`, answered from the server's cache when it holds them). Pure: fed the bytes a relay
 * passes on, it never changes them. Everything before the first `GRAPH_COMPUTE` on a connection is the
 * load; after it, `SET_TENSOR`s carry activations, not weights.
 *
 * Request framing (ggml-rpc.cpp, protocol 6): `cmd u8 | size u64 LE | payload[size]`, for every command.
 */

/** Commands of protocol 6 this meter tells apart (the enum order of ggml-rpc.cpp). */
export const RpcRequest = {
  SET_TENSOR: 6,
  SET_TENSOR_HASH: 7,
  GRAPH_COMPUTE: 10,
  HELLO: 14,
  COUNT: 19
} as const

/** `sizeof(rpc_tensor)`: the packed tensor description at the start of a SET_TENSOR payload (296 in protocol 6). */
export const RPC_TENSOR_BYTES = 296
/** A SET_TENSOR payload is `rpc_tensor | offset u64 | data`. */
const SET_TENSOR_HEADER_BYTES = RPC_TENSOR_BYTES + 8
/** ggml-rpc.cpp's HASH_THRESHOLD: tensors larger than this are first offered by hash (and cached by the server). */
export const RPC_HASH_THRESHOLD = 10 * 1024 * 1024

export interface RpcLoadCount {
  /** Tensor data bytes sent before the first graph compute (the weights that crossed this relay). */
  weightBytes: number
  /** SET_TENSORs above the hash threshold: tensors the server's cache did not hold. */
  tensorsSent: number
  /** SET_TENSOR_HASH requests before the first compute: tensors offered by hash. */
  tensorsOffered: number
  /** True once the first graph compute went through: the load is over. */
  computing: boolean
}

/** What one request added to the count; `offeredHash` names the cache file a hash offer asked for. */
export interface RpcLoadDelta {
  readonly weightBytes: number
  readonly tensorsSent: number
  readonly tensorsOffered: number
  readonly offeredHash?: string
}

/** A SET_TENSOR_HASH payload: `rpc_tensor | offset u64 | hash u64`. */
const SET_TENSOR_HASH_BYTES = RPC_TENSOR_BYTES + 16

export const emptyLoadCount = (): RpcLoadCount => ({ weightBytes: 0, tensorsSent: 0, tensorsOffered: 0, computing: false })

/** Tensors the server took from its cache: offered by hash and not sent after. */
export const tensorsFromCache = (c: RpcLoadCount): number => Math.max(0, c.tensorsOffered - c.tensorsSent)

export class RpcLoadMeter {
  readonly count: RpcLoadCount = emptyLoadCount()
  private header = Buffer.alloc(9)
  private headerFill = 0
  private command = -1
  private payloadLeft = 0
  /** The payload of a hash offer, kept to read its hash. */
  private offer: Buffer | undefined
  private offerFill = 0
  /** Set when the stream stops looking like the protocol (an unknown command, an RDMA upgrade...): stop counting. */
  private lost = false

  /** Feeds bytes in the client-to-server direction; `onCount` sees every change. */
  feed(chunk: Uint8Array, onCount?: (delta: RpcLoadDelta) => void): void {
    let at = 0
    while (at < chunk.length && !this.lost) {
      if (this.payloadLeft > 0) {
        const take = Math.min(this.payloadLeft, chunk.length - at)
        if (this.offer !== undefined) {
          this.offer.set(chunk.subarray(at, at + take), this.offerFill)
          this.offerFill += take
        }
        this.payloadLeft -= take
        at += take
        if (this.payloadLeft === 0 && this.offer !== undefined) {
          const offeredHash = this.offer
            .readBigUInt64LE(RPC_TENSOR_BYTES + 8)
            .toString(16)
            .padStart(16, '0')
          this.offer = undefined
          this.count.tensorsOffered++
          onCount?.({ weightBytes: 0, tensorsSent: 0, tensorsOffered: 1, offeredHash })
        }
        continue
      }
      const take = Math.min(9 - this.headerFill, chunk.length - at)
      this.header.set(chunk.subarray(at, at + take), this.headerFill)
      this.headerFill += take
      at += take
      if (this.headerFill < 9) break
      this.headerFill = 0
      this.command = this.header.readUInt8(0)
      const size = this.header.readBigUInt64LE(1)
      if (this.command >= RpcRequest.COUNT || size > BigInt(Number.MAX_SAFE_INTEGER)) {
        this.lost = true
        break
      }
      this.payloadLeft = Number(size)
      const delta = this.onRequest(this.command, this.payloadLeft)
      if (delta !== undefined) onCount?.(delta)
    }
  }

  private onRequest(command: number, size: number): RpcLoadDelta | undefined {
    const c = this.count
    if (command === RpcRequest.GRAPH_COMPUTE) c.computing = true
    if (c.computing) return undefined
    if (command === RpcRequest.SET_TENSOR) {
      const data = Math.max(0, size - SET_TENSOR_HEADER_BYTES)
      const sent = data > RPC_HASH_THRESHOLD ? 1 : 0
      c.weightBytes += data
      c.tensorsSent += sent
      return { weightBytes: data, tensorsSent: sent, tensorsOffered: 0 }
    }
    if (command === RpcRequest.SET_TENSOR_HASH && size === SET_TENSOR_HASH_BYTES) {
      // Counted once its hash has arrived (see feed).
      this.offer = Buffer.alloc(size)
      this.offerFill = 0
    }
    return undefined
  }
}
