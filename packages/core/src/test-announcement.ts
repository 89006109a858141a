/** A valid announcement for unit tests, with overrides (not part of the package: see `files`). */
import type { Announcement } from './announcement.js'

export function testAnnouncement(peerId: string, over: Partial<Announcement> = {}): Announcement {
  return {
    v: 1,
    cluster: 'default',
    peerId,
    incarnation: 1000,
    seq: 1,
    hostname: `host-${peerId}`,
    agentVersion: '0.1.0',
    addresses: ['/ip4/10.0.0.2/tcp/4100'],
    rpc: { host: '10.0.0.2', port: 50052, protocol: '6.0.0', state: 'ready', llamaBuild: 'b1', servingTerm: 0, access: 'direct' },
    devices: [{ kind: 'cpu', name: 'CPU', memoryTotal: 8e9, memoryFree: 6e9 }],
    memoryBudget: 4e9,
    cpuThreads: 2,
    models: [],
    canCoordinate: false,
    apiPort: 8470,
    speed: null,
    coordinator: null,
    plan: null,
    ...over
  }
}
