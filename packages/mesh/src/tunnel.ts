/**
 * TCP over the mesh: a local TCP port on one agent whose connections come out of a TCP connection on
 * another agent, carried by a libp2p stream (Noise-encrypted, authenticated by peer id). Used to reach
 * rpc-servers that listen on loopback only, so that nobody but an admitted peer can use them.
 */
import { connect, createServer, type Server, type Socket } from 'node:net'
import type { Stream } from '@libp2p/interface'

export interface TunnelCounters {
  opened: number
  refused: number
}

/** Pipes a TCP socket and a libp2p stream both ways, with back-pressure; either side closing closes the other. */
export function splice(socket: Socket, stream: Stream): void {
  socket.setNoDelay(true)
  let finished = false
  const finish = (err?: Error): void => {
    if (finished) return
    finished = true
    if (err !== undefined) {
      stream.abort(err)
      socket.destroy()
    } else {
      socket.end()
      void stream.close().catch(() => {})
    }
  }
  socket.on('data', (chunk: Buffer) => {
    try {
      if (!stream.send(chunk)) {
        socket.pause()
        stream.onDrain().then(
          () => socket.resume(),
          (err: Error) => finish(err)
        )
      }
    } catch (err) {
      finish(err as Error)
    }
  })
  // Half-closes travel across: the rpc protocol never needs them, but HTTP clients may.
  socket.on('end', () => {
    void stream.close().catch(() => {})
  })
  socket.on('error', (err) => finish(err))
  socket.on('close', () => finish())
  stream.addEventListener('message', (evt) => {
    const data = evt.data
    const ok = socket.write(data instanceof Uint8Array ? data : data.subarray())
    if (!ok) {
      stream.pause()
      socket.once('drain', () => stream.resume())
    }
  })
  stream.addEventListener('remoteCloseWrite', () => socket.end())
  stream.addEventListener('close', (evt) => {
    if (evt.error !== undefined) finish(evt.error)
    else if (!socket.destroyed) socket.end()
  })
}

/** The entry of a tunnel: a TCP listener on 127.0.0.1 whose connections are opened as streams. */
export async function listenForTunnel(
  openStream: () => Promise<Stream>,
  onError: (err: Error) => void
): Promise<{ server: Server; port: number }> {
  const server = createServer((socket) => {
    socket.pause()
    openStream().then(
      (stream) => {
        splice(socket, stream)
        socket.resume()
      },
      (err: Error) => {
        onError(err)
        socket.destroy()
      }
    )
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve())
  })
  const address = server.address()
  return { server, port: typeof address === 'object' && address !== null ? address.port : 0 }
}

/** The exit of a tunnel: connects the stream to `host:port` on this machine. */
export function exitTunnel(stream: Stream, host: string, port: number): void {
  const socket = connect({ host, port })
  socket.pause()
  socket.once('connect', () => socket.resume())
  splice(socket, stream)
}
