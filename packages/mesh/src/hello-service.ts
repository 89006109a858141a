/**
 * The mesh's request-answer protocols, one length-prefixed message on a stream of its own: hello (a peer's
 * announcement, asked of its owner on a new connection or when a beat names one we lack), introductions (the
 * members it knows, asked on a new connection) and state (the cluster view, for `sollol-agent status` and
 * any peer). What they carry is the mesh's; this moves it.
 */
import type { PeerId, Stream } from '@libp2p/interface'
import { lpStream } from '@libp2p/utils'
import type { MeshNode } from './node.js'
import { helloProtocol, introductionsProtocol, stateProtocol, WIRE } from './protocols.js'

export interface HelloServiceOptions {
  readonly cluster: string
  readonly node: () => MeshNode | undefined
  readonly counters: { announcementsFetched: number; introductionsFetched: number }
  readonly logger: { debug: (fields: Record<string, unknown>, message: string) => void }
  /** Our announcement, encoded, as hello answers it. */
  readonly announcement: () => Uint8Array
  /** The members we know, encoded, as introductions answers it. */
  readonly introductions: () => Uint8Array
  /** A peer's introductions (checked by the mesh). */
  readonly introduced: (data: Uint8Array, from: string) => void
  /** The cluster view, encoded, as state answers it. */
  readonly state: () => Uint8Array
  /** A peer's announcement as its owner answered it (validated by the mesh like any other). */
  readonly received: (data: Uint8Array, from: string) => void
  /** Whether a failed hello is worth asking again: the peer still connected and still unknown. */
  readonly stillWanted: (peer: PeerId) => boolean
}

export class HelloService {
  /** Peers whose announcement is being asked for (one request at a time per peer). */
  private readonly fetching = new Set<string>()

  constructor(private readonly o: HelloServiceOptions) {}

  async serve(): Promise<void> {
    const node = this.o.node()
    if (node === undefined) throw new Error('mesh not running')
    await node.handle(helloProtocol(this.o.cluster), async (stream) => {
      await this.reply(stream, this.o.announcement())
    })
    await node.handle(introductionsProtocol(this.o.cluster), async (stream) => {
      await this.reply(stream, this.o.introductions())
    })
    await node.handle(stateProtocol(this.o.cluster), async (stream) => {
      await this.reply(stream, this.o.state())
    })
  }

  /**
   * Asks a peer for its announcement. A failed request is made again `retries` times, 100 ms later, while
   * the peer is still wanted (a peer without our protocols, such as `sollol-agent status`, is not).
   */
  fetch(peer: PeerId, retries = 0): void {
    const id = peer.toString()
    if (this.fetching.has(id)) return
    this.fetching.add(id)
    this.request(peer, helloProtocol(this.o.cluster), WIRE.hello.maxBytes)
      .then(
        (data) => {
          this.o.counters.announcementsFetched++
          this.o.received(data, id)
        },
        (err: Error) => {
          this.o.logger.debug({ peer: id, err: err.message }, 'hello failed')
          if (retries === 0) return
          setTimeout(() => {
            if (this.o.node() !== undefined && this.o.stillWanted(peer)) this.fetch(peer, retries - 1)
          }, 100)
        }
      )
      .finally(() => this.fetching.delete(id))
  }

  /**
   * Asks a peer which members it knows. Once: a peer of an older release has no such protocol (it fails at
   * once), and what is missed here the peers' gossip still brings.
   */
  introduce(peer: PeerId): void {
    const id = peer.toString()
    this.request(peer, introductionsProtocol(this.o.cluster), WIRE.introductions.maxBytes).then(
      (data) => {
        this.o.counters.introductionsFetched++
        this.o.introduced(data, id)
      },
      (err: Error) => {
        this.o.logger.debug({ peer: id, err: err.message }, 'introductions not fetched')
      }
    )
  }

  private async reply(stream: Stream, payload: Uint8Array): Promise<void> {
    try {
      const lp = lpStream(stream, { maxDataLength: WIRE.state.maxBytes })
      await lp.write(payload, { signal: AbortSignal.timeout(5000) })
      await stream.close()
    } catch (err) {
      stream.abort(err as Error)
    }
  }

  private async request(peer: PeerId, protocol: string, maxBytes: number): Promise<Uint8Array> {
    const node = this.o.node()
    if (node === undefined) throw new Error('mesh not running')
    const stream = await node.dialProtocol(peer, protocol, { signal: AbortSignal.timeout(5000) })
    const lp = lpStream(stream, { maxDataLength: maxBytes })
    const data = await lp.read({ signal: AbortSignal.timeout(5000) })
    await stream.close().catch(() => {})
    return data.subarray()
  }
}
