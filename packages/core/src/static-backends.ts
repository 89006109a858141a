/**
 * Bare rpc-servers (no agent of their own) that a model holder was told of. The holder probes and measures
 * them and lists them in its announcement; here each becomes an announcement of its own, as if it ran an
 * agent, so that the planner, the view and `status` treat it like any node. Pure.
 */
import type { Announcement } from './announcement.js'

/** The peer id a bare rpc-server is known by: it has no libp2p identity. */
export const staticPeerId = (host: string, port: number): string => `static:${host}:${port}`

export const isStaticPeer = (peerId: string): boolean => peerId.startsWith('static:')

/**
 * The bare rpc-servers the given announcements speak for, one announcement each (the first owner of an
 * endpoint speaks for it). Fencing cannot reach them (no gate, no agent), so they serve whatever term their
 * owner believes in, like an external rpc-server; `access: 'direct'` says that nothing protects them.
 */
export function staticAnnouncements(owners: readonly Announcement[]): Announcement[] {
  const seen = new Set<string>()
  const out: Announcement[] = []
  for (const owner of owners) {
    for (const b of owner.staticBackends ?? []) {
      const peerId = staticPeerId(b.host, b.port)
      if (seen.has(peerId)) continue
      seen.add(peerId)
      out.push({
        v: owner.v,
        cluster: owner.cluster,
        peerId,
        incarnation: owner.incarnation,
        seq: owner.seq,
        hostname: `${b.host} (static)`,
        agentVersion: '-',
        addresses: [],
        rpc: {
          host: b.host,
          port: b.port,
          protocol: b.protocol,
          state: b.state === 'ready' ? 'external' : b.state === 'probing' ? 'starting' : 'unreachable',
          llamaBuild: 'unknown (no agent)',
          servingTerm: owner.coordinator?.term ?? 0,
          access: 'direct'
        },
        devices: b.devices,
        memoryBudget: b.memoryBudget,
        cpuThreads: 1,
        models: [],
        canCoordinate: false,
        apiPort: null,
        speed: b.speed,
        coordinator: null,
        plan: null
      })
    }
  }
  return out
}
