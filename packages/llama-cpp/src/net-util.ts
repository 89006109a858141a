import { readFileSync } from 'node:fs'
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

/** Where the kernel picks ports for outgoing connections and port-0 binds (Linux: ip_local_port_range). */
export function ephemeralPortRange(): { low: number; high: number } {
  try {
    const [low, high] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number)
    if (low !== undefined && high !== undefined && Number.isInteger(low) && Number.isInteger(high)) return { low, high }
  } catch {
    // not Linux: the IANA range most other systems use
  }
  return { low: 49152, high: 65535 }
}

/** The lowest port freePort picks: above the well-known and most registered service ports. */
const LOWEST_PICKED_PORT = 10_000
const handedOut = new Set<number>()

/**
 * A free TCP port on host for a server that binds it later (often another process). It is picked below the
 * kernel's ephemeral range: a port from that range can be taken between this pick and the server's bind by any
 * outgoing connection on the machine (CI saw a demo agent lose its p2p port to one, EADDRINUSE). A port is
 * never handed out twice by this process, since its server may not have bound it yet. Where the ephemeral
 * range leaves no room below it, the kernel picks, as before.
 */
export async function freePort(host = '127.0.0.1', random: () => number = Math.random): Promise<number> {
  const below = ephemeralPortRange().low
  const span = below - LOWEST_PICKED_PORT
  for (let attempt = 0; span >= 1000 && attempt < 200; attempt++) {
    const port = LOWEST_PICKED_PORT + Math.floor(random() * span)
    if (handedOut.has(port) || (await isPortInUse(host, port))) continue
    handedOut.add(port)
    return port
  }
  return await kernelPickedPort(host)
}

async function kernelPickedPort(host: string): Promise<number> {
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
