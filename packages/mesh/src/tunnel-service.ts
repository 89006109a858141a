/**
 * Tunnels over the mesh (tunnel.ts carries the bytes): serving a named tunnel to admitted peers, cutting
 * the streams of peers whose admission was withdrawn (the fence of a new term), and opening the local
 * entry of a peer's tunnel.
 */
import type { Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import type { MeshNode } from './node.js'
import { tunnelProtocol } from './protocols.js'
import { exitTunnel, listenForTunnel } from './tunnel.js'

export interface TunnelServiceOptions {
  readonly cluster: string
  readonly node: () => MeshNode | undefined
  readonly counters: { tunnelsOpened: number; tunnelsRefused: number }
  readonly logger: { warn: (fields: Record<string, unknown>, message: string) => void }
}

/** Sees what comes out of each admitted stream (to count the weights a load moves). */
export type TunnelTap = () => { feed: (chunk: Uint8Array) => void; close: () => void }

export class TunnelService {
  /** Open tunnel exits, by the peer that opened them (cut when that peer loses admission). */
  private readonly streams = new Map<string, Set<Stream>>()

  constructor(private readonly o: TunnelServiceOptions) {}

  /** Streams from admitted peers come out as TCP connections to host:port here; others are refused and counted. */
  async serve(name: string, target: { host: string; port: number }, admit: (peerId: string) => boolean, tap?: TunnelTap): Promise<void> {
    const node = this.o.node()
    if (node === undefined) throw new Error('mesh not running')
    await node.handle(
      tunnelProtocol(this.o.cluster, name),
      (stream, connection) => {
        const peer = connection.remotePeer.toString()
        if (!admit(peer)) {
          this.o.counters.tunnelsRefused++
          this.o.logger.warn({ peer, tunnel: name }, 'tunnel refused: peer not admitted')
          stream.abort(new Error('not admitted'))
          return
        }
        this.o.counters.tunnelsOpened++
        const streams = this.streams.get(peer) ?? new Set<Stream>()
        this.streams.set(peer, streams)
        streams.add(stream)
        stream.addEventListener('close', () => {
          streams.delete(stream)
          // per-peer state goes with the peer's last stream
          if (streams.size === 0 && this.streams.get(peer) === streams) this.streams.delete(peer)
        })
        const watch = tap?.()
        if (watch !== undefined) {
          stream.addEventListener('message', (evt) => watch.feed(evt.data instanceof Uint8Array ? evt.data : evt.data.subarray()))
          stream.addEventListener('close', () => watch.close())
        }
        exitTunnel(stream, target.host, target.port)
      },
      { maxInboundStreams: 256 }
    )
  }

  /** Cuts every open tunnel stream of peers that `keep` rejects (admission changed); returns how many. */
  cut(keep: (peerId: string) => boolean): number {
    let cut = 0
    for (const [peer, streams] of this.streams) {
      if (keep(peer)) continue
      for (const stream of streams) {
        stream.abort(new Error('admission withdrawn'))
        cut++
      }
      streams.clear()
      this.streams.delete(peer)
    }
    return cut
  }

  /** Opens the entry of peer's tunnel `name`: a TCP port on 127.0.0.1 that leads there. */
  async open(peerId: string, name: string): Promise<{ port: number; close: () => Promise<void> }> {
    const node = this.o.node()
    if (node === undefined) throw new Error('mesh not running')
    const { server, port } = await listenForTunnel(
      async () =>
        await node.dialProtocol(peerIdFromString(peerId), tunnelProtocol(this.o.cluster, name), {
          signal: AbortSignal.timeout(10_000),
          maxOutboundStreams: 256
        } as Parameters<typeof node.dialProtocol>[2]),
      (err) => this.o.logger.warn({ peer: peerId, tunnel: name, err: err.message }, 'tunnel stream failed')
    )
    return {
      port,
      close: async () => {
        await new Promise<void>((resolve) => server.close(() => resolve()))
      }
    }
  }
}
