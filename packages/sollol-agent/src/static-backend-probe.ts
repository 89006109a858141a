/**
 * Bare rpc-servers (no agent) this agent speaks for (`--rpc-backend`, `--rpc-backends-file`): probed now
 * and then, measured once when they first answer, and announced by this agent so that the coordinator
 * plans with them.
 */
import { formatRpcVersion, probeRpcServer, type Logger } from '@sollol/llama-cpp'
import type { Announcement, StaticBackend } from '@sollol/core'

type Speed = NonNullable<Announcement['speed']>

export interface StaticBackendProbeOptions {
  readonly backends: ReadonlyArray<{ host: string; port: number }>
  /** Measures one server's speed (`host:port`). */
  readonly calibrate: (endpoint: string) => Promise<Speed>
  readonly intervalMs?: number
  readonly logger: Logger
  /** What would be announced changed. */
  readonly onChange: () => void
}

export class StaticBackendProbe {
  private readonly known = new Map<string, StaticBackend>()
  private timer: NodeJS.Timeout | undefined
  private probing = false

  constructor(private readonly o: StaticBackendProbeOptions) {}

  /** The servers as last probed (empty until the first probe of each). */
  list(): StaticBackend[] {
    return [...this.known.values()]
  }

  /** Probes at once (a first measurement takes seconds: nothing waits for it) and then every interval. */
  start(): void {
    if (this.o.backends.length === 0 || this.timer !== undefined) return
    void this.probe()
    this.timer = setInterval(() => void this.probe(), this.o.intervalMs ?? 10_000)
  }

  /** One round of probes now (none when one is under way). */
  async probe(): Promise<void> {
    if (this.probing) return
    this.probing = true
    try {
      await this.probeAll()
    } finally {
      this.probing = false
    }
  }

  stop(): void {
    clearInterval(this.timer)
    this.timer = undefined
  }

  private async probeAll(): Promise<void> {
    let changed = false
    for (const { host, port } of this.o.backends) {
      const key = `${host}:${port}`
      const last = this.known.get(key)
      const base: StaticBackend = last ?? { host, port, protocol: null, state: 'probing', devices: [], memoryBudget: 0, speed: null }
      const next = await this.probeOne(key, base)
      if (next.state !== base.state)
        this.o.logger.info({ backend: key, state: next.state, protocol: next.protocol }, 'static rpc-server (no agent, unprotected)')
      if (JSON.stringify(next) !== JSON.stringify(last)) changed = true
      this.known.set(key, next)
    }
    if (changed) this.o.onChange()
  }

  /**
   * Protocol and device memory (its budget: 75 % of what is free), its speed measured once, when it first
   * answers (before any plan uses it). One that refuses or closes is `unreachable` (left out of plans until
   * it answers again); one that times out is busy serving and keeps its state.
   */
  private async probeOne(key: string, last: StaticBackend): Promise<StaticBackend> {
    try {
      const probe = await probeRpcServer(last.host, last.port)
      const free = probe.devices.reduce((sum, d) => sum + d.free, 0)
      let next: StaticBackend = {
        ...last,
        protocol: formatRpcVersion(probe.version),
        state: 'ready',
        // a bare server's devices have no names we can learn (the protocol gives memory only); each is
        // planned with 75 % of its free memory and its own --tensor-split entry, at the server's speed
        devices: probe.devices.map((d) => ({
          kind: 'cpu',
          name: `${key} #${d.index}`,
          memoryTotal: d.total,
          memoryFree: d.free,
          rpcIndex: d.index,
          budget: Math.floor(d.free * 0.75),
          speed: last.speed
        })),
        memoryBudget: Math.floor(free * 0.75)
      }
      if (last.speed === null && last.state !== 'ready') {
        const speed = await this.o.calibrate(key).catch((err: Error) => {
          this.o.logger.warn({ backend: key, err: err.message }, 'could not measure a static rpc-server; the planner assumes it is slow')
          return null
        })
        next = { ...next, speed, devices: next.devices.map((d) => ({ ...d, speed })) }
      }
      return next
    } catch (err) {
      return (err as { kind?: string }).kind !== 'timeout' ? { ...last, state: 'unreachable' } : last
    }
  }
}
