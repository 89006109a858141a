/**
 * Heartbeats on the wire (heartbeat.ts has the bytes): one long-lived stream to each member we beat, opened
 * when missing and dropped when a write fails (the next beat opens another); every beat read from a peer
 * is handed to the mesh, which feeds membership. Which members to beat is the mesh's (the ring: liveness.ts).
 */
import type { PeerId, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { lpStream } from '@libp2p/utils'
import { decodeBeat } from './heartbeat.js'
import type { MeshNode } from './node.js'
import { heartbeatProtocol, WIRE } from './protocols.js'

export type Beat = NonNullable<ReturnType<typeof decodeBeat>>

export interface HeartbeatServiceOptions {
  readonly cluster: string
  readonly node: () => MeshNode | undefined
  /** The beat period: each member is beaten at least once per period, answered at most once per half period. */
  readonly intervalMs: number
  readonly now: () => number
  readonly counters: { heartbeatsIn: number; heartbeatsOut: number }
  readonly logger: { debug: (fields: Record<string, unknown>, message: string) => void }
  /** Our beat now (the incarnation and seq of our latest announcement); undefined before the first. */
  readonly ourBeat: () => Uint8Array | undefined
  /** A beat read from a peer (a sign of life for the announcement it names). */
  readonly onBeat: (peer: PeerId, beat: Beat) => void
}

/** Our outbound heartbeat stream to one member. */
interface BeatStream {
  readonly stream: Stream
  readonly write: (bytes: Uint8Array) => Promise<void>
}

export class HeartbeatService {
  /** Our outbound stream per member ('opening' while it is being opened). */
  private readonly streams = new Map<string, BeatStream | 'opening'>()
  /** When our last beat to each member went (a beat answered early is not sent again on the timer). */
  private readonly sentAt = new Map<string, number>()

  constructor(private readonly o: HeartbeatServiceOptions) {}

  /** Reads the beats of every peer that beats us. */
  async serve(): Promise<void> {
    const node = this.o.node()
    if (node === undefined) throw new Error('mesh not running')
    await node.handle(heartbeatProtocol(this.o.cluster), async (stream, connection) => {
      await this.read(stream, connection.remotePeer)
    })
  }

  /**
   * A beat to each of `targets` that is connected, sent without waiting (a frozen peer's stream only queues
   * 18 bytes a beat until its connection goes); members no longer among them stop hearing ours.
   */
  beat(targets: ReadonlySet<string>): void {
    const node = this.o.node()
    if (node === undefined) return
    for (const [id, entry] of this.streams) {
      if (targets.has(id)) continue
      this.streams.delete(id)
      this.sentAt.delete(id)
      if (entry !== 'opening') void entry.stream.close().catch(() => {})
    }
    for (const id of targets) {
      const peer = peerIdFromString(id)
      if (node.getConnections(peer).length === 0) continue
      const entry = this.streams.get(id)
      if (entry === 'opening') continue
      if (entry === undefined) {
        this.open(node, peer, id)
        continue
      }
      this.send(id, entry, 'when due')
    }
  }

  /** The member's last connection closed: its stream goes with it. */
  forget(id: string): void {
    const entry = this.streams.get(id)
    this.streams.delete(id)
    this.sentAt.delete(id)
    if (entry !== undefined && entry !== 'opening') entry.stream.abort(new Error('disconnected'))
  }

  private open(node: MeshNode, peer: PeerId, id: string): void {
    this.streams.set(id, 'opening')
    node.dialProtocol(peer, heartbeatProtocol(this.o.cluster), { signal: AbortSignal.timeout(5000) }).then(
      (stream) => {
        if (this.o.node() === undefined || this.streams.get(id) !== 'opening') {
          stream.abort(new Error('no longer wanted'))
          return
        }
        const lp = lpStream(stream, { maxDataLength: WIRE.heartbeat.maxBytes })
        const opened = { stream, write: async (bytes: Uint8Array) => await lp.write(bytes) }
        this.streams.set(id, opened)
        this.send(id, opened)
      },
      (err: Error) => {
        this.streams.delete(id)
        this.o.logger.debug({ peer: id, err: err.message }, 'heartbeat stream not opened')
      }
    )
  }

  /**
   * Sends our beat to one member; 'when due': only if the last one went half a period ago or more. Every
   * beat we receive is answered this way, so the two beats of a pair go out together, each riding with the
   * window update of the other's frame (one TCP segment each way instead of two), and the timer finds most
   * members already beaten. Each side still beats at least once per period.
   */
  private send(id: string, entry: BeatStream, when: 'now' | 'when due' = 'now'): void {
    const beat = this.o.ourBeat()
    if (beat === undefined) return
    const now = this.o.now()
    if (when === 'when due' && now - (this.sentAt.get(id) ?? -Infinity) < this.o.intervalMs / 2) return
    this.sentAt.set(id, now)
    entry.write(beat).then(
      () => {
        this.o.counters.heartbeatsOut++
      },
      (err: Error) => {
        if (this.streams.get(id) === entry) this.streams.delete(id)
        entry.stream.abort(err)
      }
    )
  }

  /** Reads a peer's beats until its stream ends, answering each with ours when due. */
  private async read(stream: Stream, peer: PeerId): Promise<void> {
    const id = peer.toString()
    const lp = lpStream(stream, { maxDataLength: WIRE.heartbeat.maxBytes })
    try {
      for (;;) {
        const beat = decodeBeat((await lp.read()).subarray())
        if (beat === undefined) throw new Error('malformed heartbeat')
        this.o.counters.heartbeatsIn++
        this.o.onBeat(peer, beat)
        const ours = this.streams.get(id)
        if (ours !== undefined && ours !== 'opening') this.send(id, ours, 'when due')
      }
    } catch (err) {
      stream.abort(err as Error)
    }
  }
}
