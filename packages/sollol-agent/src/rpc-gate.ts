/**
 * The rpc gate: the worker's rpc-server listens on loopback, and this proxy on the LAN port lets through
 * only connections from the address of the current coordinator (as seen on its authenticated libp2p
 * connection). One pipe in this process, no encryption: cheaper than the mesh tunnel per round trip.
 * Everyone else is cut at once, and counted.
 */
import { connect, createServer, type Server, type Socket } from 'node:net'
import type { RelayTap } from './relay-loads.js'

export interface RpcGateOptions {
  readonly host: string
  readonly port: number
  /** The loopback rpc-server. */
  readonly targetPort: number
  /** Addresses admitted now (the coordinator's). */
  readonly admitted: () => ReadonlySet<string>
  readonly onRefused: (address: string) => void
  /** Sees what each admitted client sends (to count the weights a load moves). */
  readonly tap?: () => RelayTap
}

const normalise = (address: string | undefined): string => (address ?? '').replace(/^::ffff:/, '')

export class RpcGate {
  private server: Server | undefined
  private readonly open = new Set<Socket>()
  refused = 0

  constructor(private readonly o: RpcGateOptions) {}

  async start(): Promise<void> {
    const server = createServer({ noDelay: true }, (client) => {
      const from = normalise(client.remoteAddress)
      if (!this.o.admitted().has(from)) {
        this.refused++
        this.o.onRefused(from)
        client.destroy()
        return
      }
      const upstream = connect({ host: '127.0.0.1', port: this.o.targetPort, noDelay: true })
      this.open.add(client)
      const tap = this.o.tap?.()
      if (tap !== undefined) client.on('data', (chunk: Buffer) => tap.feed(chunk))
      client.pipe(upstream)
      upstream.pipe(client)
      const close = (): void => {
        tap?.close()
        this.open.delete(client)
        client.destroy()
        upstream.destroy()
      }
      client.on('error', close)
      upstream.on('error', close)
      client.on('close', close)
      upstream.on('close', close)
    })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(this.o.port, this.o.host, () => resolve())
    })
    this.server = server
  }

  /** Closes connections from addresses no longer admitted (a new term, another coordinator). */
  cut(): number {
    const admitted = this.o.admitted()
    let cut = 0
    for (const socket of this.open) {
      if (!admitted.has(normalise(socket.remoteAddress))) {
        socket.destroy()
        cut++
      }
    }
    return cut
  }

  async stop(): Promise<void> {
    for (const socket of this.open) socket.destroy()
    await new Promise<void>((resolve) => (this.server === undefined ? resolve() : this.server.close(() => resolve())))
    this.server = undefined
  }
}
