import { connect, createServer } from 'node:net'

/** True when something on this machine already listens on host:port (so starting a server there would fail). */
export async function isPortInUse(host: string, port: number): Promise<boolean> {
  return await new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EADDRINUSE') resolve(true)
      else if (err.code === 'EADDRNOTAVAIL') reject(new Error(`Expected a host address of this machine, got \`${host}\``))
      else reject(err)
    })
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve(false)))
  })
}

/**
 * One TCP connect that sends nothing and closes with FIN. rpc-server accepts it, reads EOF and goes
 * back to accept: the cheapest harmless readiness check (it never makes the server write).
 */
export async function canConnect(host: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return await new Promise((resolve) => {
    const socket = connect({ host, port })
    const done = (ok: boolean): void => {
      socket.removeAllListeners()
      socket.on('error', () => {})
      socket.end()
      resolve(ok)
    }
    socket.setTimeout(timeoutMs, () => {
      done(false)
      socket.destroy()
    })
    socket.once('connect', () => done(true))
    socket.once('error', () => done(false))
  })
}

/** The address to connect to for a server bound to `host` (a wildcard bind is reached on loopback). */
export function connectHost(host: string): string {
  return host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host
}

/** A free TCP port on host, picked by the kernel. */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen({ host, port: 0 }, () => {
      const address = server.address()
      const port = typeof address === 'object' && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })
}
