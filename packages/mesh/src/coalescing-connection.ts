/**
 * Fewer packets for small messages: every write a connection makes in one turn of the event loop goes to
 * the socket as one buffer.
 *
 * Why: @libp2p/tcp writes each chunk it is handed separately with Nagle off, Noise hands it a 2-byte length
 * and then the ciphertext, and yamux answers every data frame with a window update. A 16-byte heartbeat was
 * six TCP segments (length, frame, ACK, length, window update, ACK), and at rest with 20 agents the segment
 * headers were most of each agent's bytes on the wire. Joined, a heartbeat is one segment and the receiver's
 * window update rides with whatever else it writes in that turn. Large writes (weights through the tunnel)
 * go out at once, so nothing waits behind a batch; small ones wait until the I/O callbacks of this turn and
 * their promise continuations have run (setImmediate, not nextTick: a heartbeat answered in an `await`
 * continuation then leaves in the same segment as the window update yamux wrote before it).
 *
 * libp2p's only hook on the raw connection is the connection protector, so an open cluster installs this
 * one (it exchanges nothing: the bytes on the wire are the same as without it) and the cluster key's
 * protector (private-network.ts) encrypts on its way through the same class.
 */
import type { AbortOptions, ConnectionProtector, MessageStream, MultiaddrConnection } from '@libp2p/interface'
import { AbstractMultiaddrConnection } from '@libp2p/utils'

/** Pending bytes past which a write is sent at once rather than at the end of the task. */
const FLUSH_AT_BYTES = 16 * 1024

/** A transform applied to each direction's bytes in order (identity for an open cluster). */
export type ByteTransform = (bytes: Uint8Array) => Uint8Array

const identity: ByteTransform = (bytes) => bytes

export class CoalescingConnection extends AbstractMultiaddrConnection {
  private readonly raw: MultiaddrConnection
  private readonly outbound: ByteTransform
  private pending: Uint8Array[] = []
  private pendingBytes = 0
  private flushScheduled = false
  /** The raw connection said it can take no more: tell the streams above to wait for its drain. */
  private rawFull = false

  constructor(init: { raw: MultiaddrConnection; inbound?: ByteTransform; outbound?: ByteTransform; scope?: string }) {
    const raw = init.raw
    super({ remoteAddr: raw.remoteAddr, direction: raw.direction, log: raw.log.newScope(init.scope ?? 'coalesce') })
    this.raw = raw
    this.outbound = init.outbound ?? identity
    const inbound = init.inbound ?? identity
    raw.addEventListener('message', (evt) => {
      // An exception here would be thrown inside the socket's listener: close this connection instead.
      try {
        const data = evt.data
        if (data instanceof Uint8Array) this.onData(inbound(data))
        else for (const chunk of data) this.onData(inbound(chunk))
      } catch (err) {
        this.abort(err as Error)
      }
    })
    raw.addEventListener('drain', () => {
      this.rawFull = false
      this.onMuxerDrain()
    })
    raw.addEventListener('close', (evt) => {
      if (evt.error != null) {
        if (evt.local) this.abort(evt.error)
        else this.onRemoteReset()
      } else this.onTransportClosed()
    })
  }

  sendData(data: Parameters<AbstractMultiaddrConnection['sendData']>[0]): { sentBytes: number; canSendMore: boolean } {
    for (const chunk of data) this.pending.push(chunk)
    this.pendingBytes += data.byteLength
    if (this.pendingBytes >= FLUSH_AT_BYTES) this.flush()
    else if (!this.flushScheduled) {
      this.flushScheduled = true
      setImmediate(() => this.flush())
    }
    return { sentBytes: data.byteLength, canSendMore: !this.rawFull }
  }

  private flush(): void {
    this.flushScheduled = false
    if (this.pendingBytes === 0) return
    const chunks = this.pending
    const bytes = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, this.pendingBytes)
    this.pending = []
    this.pendingBytes = 0
    try {
      if (!this.raw.send(this.outbound(bytes))) this.rawFull = true
    } catch (err) {
      this.abort(err as Error)
    }
  }

  async sendClose(options?: AbortOptions): Promise<void> {
    this.flush()
    await this.raw.close(options)
  }

  sendReset(err: Error): void {
    this.pending = []
    this.pendingBytes = 0
    this.raw.abort(err)
  }

  sendPause(): void {
    this.raw.pause()
  }

  sendResume(): void {
    this.raw.resume()
  }
}

class CoalescingProtector implements ConnectionProtector {
  readonly [Symbol.toStringTag] = 'sollol-coalescing'

  // libp2p hands the protector the raw connection (a MultiaddrConnection) and upgrades what it returns.
  async protect(connection: MessageStream): Promise<MessageStream> {
    return new CoalescingConnection({ raw: connection as MultiaddrConnection })
  }
}

/** libp2p's `connectionProtector` for an open cluster: no handshake, the same bytes, fewer packets. */
export function coalescingConnections(): () => ConnectionProtector {
  return () => new CoalescingProtector()
}
