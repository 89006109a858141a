/**
 * Counts the weights that reach this agent's rpc-server through its gate or tunnel, per load: a load
 * starts when llama-server connects while no relayed connection is open (a new llama-server, after a
 * re-plan or a failover) and is over at its first graph compute. What the coordinator's llama-server sends
 * to its own machine's rpc-server goes over loopback, not through a relay, and never crosses the LAN.
 */
import { RpcLoadMeter } from '@sollol/llama-cpp'

export interface RelayLoad {
  readonly startedAt: string
  /** Tensor bytes sent to the rpc-server during the load. */
  readonly weightBytes: number
  /** Tensors offered by hash and taken from the rpc-server's cache. */
  readonly tensorsFromCache: number
  /** Tensors above the hash threshold whose bytes had to be sent. */
  readonly tensorsSent: number
  /** The load is over (llama-server computes). */
  readonly done: boolean
}

/** One relayed connection, seen from the client's side. */
export interface RelayTap {
  feed: (chunk: Uint8Array) => void
  close: () => void
}

export class RelayLoads {
  private open = 0
  private load: { startedAt: string; weightBytes: number; tensorsSent: number; tensorsOffered: number; done: boolean } | null = null
  /** Every weight byte relayed since the agent started (for the Prometheus counter). */
  weightBytesTotal = 0

  constructor(
    /** Told of every cache file a load asks for (to keep it in the LRU order). */
    private readonly onOfferedHash: (hash: string) => void,
    /** Told once per load when it is over (its first graph compute). */
    private readonly onLoadDone: () => void = () => {},
    private readonly wallNow: () => number = Date.now
  ) {}

  get current(): RelayLoad | null {
    const l = this.load
    if (l === null) return null
    return {
      startedAt: l.startedAt,
      weightBytes: l.weightBytes,
      tensorsFromCache: Math.max(0, l.tensorsOffered - l.tensorsSent),
      tensorsSent: l.tensorsSent,
      done: l.done
    }
  }

  connection(): RelayTap {
    if (this.open === 0) {
      this.load = { startedAt: new Date(this.wallNow()).toISOString(), weightBytes: 0, tensorsSent: 0, tensorsOffered: 0, done: false }
    }
    this.open++
    const load = this.load!
    const meter = new RpcLoadMeter()
    let closed = false
    return {
      feed: (chunk) => {
        meter.feed(chunk, (delta) => {
          load.weightBytes += delta.weightBytes
          load.tensorsSent += delta.tensorsSent
          load.tensorsOffered += delta.tensorsOffered
          this.weightBytesTotal += delta.weightBytes
          if (delta.offeredHash !== undefined) this.onOfferedHash(delta.offeredHash)
        })
        if (meter.count.computing && !load.done) {
          load.done = true
          this.onLoadDone()
        }
      },
      close: () => {
        if (closed) return
        closed = true
        this.open--
      }
    }
  }
}
