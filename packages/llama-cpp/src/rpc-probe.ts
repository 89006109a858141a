/**
 * Reads the protocol version and devices of an idle rpc-server: HELLO, DEVICE_COUNT, GET_DEVICE_MEMORY.
 *
 * An rpc-server serves one client at a time and dies of SIGPIPE when it writes to a closed socket
 * (two writes per reply), so the probe must never close a connection while a reply may still come:
 * it sends one request at a time, reads every reply, and ends with a FIN (half-close). When the server
 * is busy with another client the probe times out and still keeps reading (and discarding) until the
 * server itself closes, so the late HELLO reply lands in an open socket.
 */
import { connect, type Socket } from 'node:net'
import {
  decodeDeviceCount,
  decodeDeviceMemory,
  decodeHello,
  encodeDeviceCount,
  encodeGetDeviceMemory,
  encodeHello,
  encodeLegacyHello,
  takeReply,
  DEVICE_COUNT_REPLY,
  DEVICE_MEMORY_REPLY,
  HELLO_REPLY,
  LEGACY_HELLO_REPLY,
  RpcProtocolError,
  type RpcVersion
} from './rpc-protocol.js'
import { ExitCode, SollolError } from '@sollol/core'

export interface RpcDeviceMemory {
  readonly index: number
  readonly free: number
  readonly total: number
}

export interface RpcProbeResult {
  readonly endpoint: string
  readonly version: RpcVersion
  /** True when the server speaks a protocol older than 6 (no device listing through it). */
  readonly legacy: boolean
  readonly devices: readonly RpcDeviceMemory[]
}

export type RpcProbeFailure = 'refused' | 'timeout' | 'closed' | 'protocol'

export class RpcProbeError extends SollolError {
  constructor(
    readonly endpoint: string,
    readonly kind: RpcProbeFailure,
    detail: string
  ) {
    super(`rpc-server ${endpoint}: ${detail}`, ExitCode.FAILURE)
  }
}

export interface RpcProbeOptions {
  /** Whole-probe deadline. A busy server never answers: this is how long we wait for it. */
  readonly timeoutMs?: number
  /** How long a timed-out connection is kept open to swallow the server's late reply. */
  readonly lingerMs?: number
}

const DEFAULT_TIMEOUT_MS = 3000
const DEFAULT_LINGER_MS = 5 * 60_000
/** A device count beyond this is not a real server. */
const MAX_DEVICES = 64

class ReplyReader {
  private buffer: Buffer = Buffer.alloc(0)
  private waiter: (() => void) | undefined
  private failure: Error | undefined

  constructor(
    private readonly socket: Socket,
    private readonly endpoint: string
  ) {
    socket.on('data', (chunk: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, chunk])
      this.wake()
    })
    socket.on('end', () => this.fail(new RpcProbeError(endpoint, 'closed', 'closed the connection before replying')))
    socket.on('error', (err: NodeJS.ErrnoException) => {
      const kind: RpcProbeFailure = err.code === 'ECONNREFUSED' ? 'refused' : 'closed'
      this.fail(new RpcProbeError(endpoint, kind, err.code === 'ECONNREFUSED' ? 'connection refused (not running?)' : err.message))
    })
  }

  private fail(err: Error): void {
    this.failure ??= err
    this.wake()
  }
  private wake(): void {
    const w = this.waiter
    this.waiter = undefined
    w?.()
  }

  async exchange(request: Buffer, replyBytes: number): Promise<Buffer> {
    this.socket.write(request)
    for (;;) {
      let reply
      try {
        reply = takeReply(this.buffer, replyBytes)
      } catch (err) {
        throw new RpcProbeError(this.endpoint, 'protocol', (err as RpcProtocolError).message)
      }
      if (reply !== undefined) {
        this.buffer = reply.rest
        return reply.payload
      }
      if (this.failure !== undefined) throw this.failure
      await new Promise<void>((resolve) => {
        this.waiter = resolve
      })
    }
  }
}

/** Half-closes and keeps draining until the server closes, so no late write of the server hits a reset. */
function closeGently(socket: Socket, lingerMs: number): void {
  socket.resume()
  socket.end()
  const timer = setTimeout(() => socket.destroy(), lingerMs)
  timer.unref()
  socket.unref()
  socket.once('close', () => clearTimeout(timer))
}

async function withConnection<T>(
  host: string,
  port: number,
  options: RpcProbeOptions,
  talk: (reader: ReplyReader) => Promise<T>
): Promise<T> {
  const endpoint = `${host}:${port}`
  const socket = connect({ host, port })
  socket.setNoDelay(true)
  const reader = new ReplyReader(socket, endpoint)
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new RpcProbeError(
            endpoint,
            'timeout',
            `no answer within ${options.timeoutMs ?? DEFAULT_TIMEOUT_MS} ms (busy with another client, or frozen)`
          )
        ),
      options.timeoutMs ?? DEFAULT_TIMEOUT_MS
    )
  })
  try {
    return await Promise.race([talk(reader), timeout])
  } finally {
    clearTimeout(timer)
    closeGently(socket, options.lingerMs ?? DEFAULT_LINGER_MS)
  }
}

export async function probeRpcServer(host: string, port: number, options: RpcProbeOptions = {}): Promise<RpcProbeResult> {
  const endpoint = `${host}:${port}`
  try {
    return await withConnection(host, port, options, async (reader) => {
      const version = decodeHello(await reader.exchange(encodeHello(), HELLO_REPLY))
      const count = decodeDeviceCount(await reader.exchange(encodeDeviceCount(), DEVICE_COUNT_REPLY))
      if (count > MAX_DEVICES) throw new RpcProbeError(endpoint, 'protocol', `Expected at most ${MAX_DEVICES} devices, got ${count}`)
      const devices: RpcDeviceMemory[] = []
      for (let index = 0; index < count; index++) {
        devices.push({ index, ...decodeDeviceMemory(await reader.exchange(encodeGetDeviceMemory(index), DEVICE_MEMORY_REPLY)) })
      }
      return { endpoint, version, legacy: false, devices }
    })
  } catch (err) {
    // A server older than protocol 6 closes on our 24-byte HELLO; ask again the old way to name its version.
    if (err instanceof RpcProbeError && err.kind === 'closed') {
      const legacy = await withConnection(host, port, options, async (reader) =>
        decodeHello(await reader.exchange(encodeLegacyHello(), LEGACY_HELLO_REPLY))
      ).catch(() => undefined)
      if (legacy !== undefined) return { endpoint, version: legacy, legacy: true, devices: [] }
    }
    throw err
  }
}
