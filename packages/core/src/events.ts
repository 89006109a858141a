/**
 * What happened in the cluster, told as events (joins, leaves, elections, re-plans, server and rpc
 * states) for people: the dashboard and `/v1/events`. Derived by comparing two successive cluster views,
 * so every agent can tell the story from what it sees, without a protocol of its own. Pure.
 */
import type { ClusterView, NodeView } from './cluster-view.js'

export const CLUSTER_EVENT_KINDS = ['joined', 'left', 'suspect', 'recovered', 'coordinator', 'plan', 'server', 'rpc'] as const
export type ClusterEventKind = (typeof CLUSTER_EVENT_KINDS)[number]

export interface ClusterEvent {
  /** Increasing number, so that a client polling `/v1/events?after=N` gets each event once. */
  readonly id: number
  readonly at: string
  readonly kind: ClusterEventKind
  /** The node it is about, when it is about one. */
  readonly peerId: string | null
  readonly message: string
}

export type NewClusterEvent = Omit<ClusterEvent, 'id' | 'at'>

const nameOf = (n: Pick<NodeView, 'hostname' | 'peerId'>): string => `${n.hostname} (…${n.peerId.slice(-6)})`

function layersOf(n: Pick<NodeView, 'layers' | 'output' | 'deviceLayers'>): string {
  if (n.deviceLayers !== undefined && n.deviceLayers.length > 0)
    return n.deviceLayers.map((d) => `${d.device} ${layersOf({ layers: d.layers, output: d.output })}`).join(', ')
  if (n.layers === null) return n.output ? 'output' : 'none'
  return `${n.layers[0]}-${n.layers[1]}${n.output ? ' + output' : ''}`
}

/** The events that lead from `before` to `after` (null before: the agent just started). */
export function clusterEvents(before: ClusterView | null, after: ClusterView): NewClusterEvent[] {
  const events: NewClusterEvent[] = []
  const old = new Map((before?.nodes ?? []).map((n) => [n.peerId, n]))
  const now = new Map(after.nodes.map((n) => [n.peerId, n]))
  for (const n of after.nodes) {
    const was = old.get(n.peerId)
    if (was === undefined) {
      const what = n.status === 'self' ? 'this agent started' : 'joined'
      events.push({ kind: 'joined', peerId: n.peerId, message: `${nameOf(n)} ${what}` })
      continue
    }
    if (was.status !== 'suspect' && n.status === 'suspect')
      events.push({ kind: 'suspect', peerId: n.peerId, message: `${nameOf(n)} went silent (suspect)` })
    if (was.status === 'suspect' && n.status === 'alive')
      events.push({ kind: 'recovered', peerId: n.peerId, message: `${nameOf(n)} is heard again` })
    if (was.rpc.state !== n.rpc.state)
      events.push({ kind: 'rpc', peerId: n.peerId, message: `${nameOf(n)} rpc-server ${was.rpc.state} -> ${n.rpc.state}` })
  }
  for (const n of before?.nodes ?? []) {
    if (!now.has(n.peerId)) events.push({ kind: 'left', peerId: n.peerId, message: `${nameOf(n)} left` })
  }
  const c0 = before?.coordinator ?? null
  const c1 = after.coordinator
  if (c1 !== null && (c0 === null || c0.peerId !== c1.peerId || c0.term !== c1.term)) {
    const node = now.get(c1.peerId)
    events.push({
      kind: 'coordinator',
      peerId: c1.peerId,
      message: `${node !== undefined ? nameOf(node) : `…${c1.peerId.slice(-6)}`} coordinates (term ${c1.term})`
    })
  } else if (c1 === null && c0 !== null) {
    events.push({ kind: 'coordinator', peerId: null, message: `no coordinator (term ${c0.term} ended)` })
  }
  const p0 = before?.plan ?? null
  const p1 = after.plan
  if (p1 !== null && (p0 === null || p0.generation !== p1.generation || p0.term !== p1.term)) {
    const parts = after.nodes.filter((n) => n.layers !== null || n.output).map((n) => `${n.hostname} ${layersOf(n)}`)
    events.push({
      kind: 'plan',
      peerId: null,
      message: `plan ${p1.generation} (term ${p1.term}) for ${p1.model.name}: ${parts.join(', ') || 'no layers'}; llama-server ${p1.server.state}`
    })
  }
  if (p1 !== null && p0 !== null && p0.term === p1.term && p0.generation === p1.generation && p0.server.state !== p1.server.state) {
    const detail = p1.server.detail !== null ? ` (${p1.server.detail})` : ''
    events.push({ kind: 'server', peerId: null, message: `llama-server ${p0.server.state} -> ${p1.server.state}${detail}` })
  }
  if (p1 === null && p0 !== null) events.push({ kind: 'server', peerId: null, message: 'no plan: the cluster stopped serving' })
  return events
}

/** The last `capacity` events, numbered. */
export class EventLog {
  private readonly events: ClusterEvent[] = []
  private nextId = 1

  constructor(private readonly capacity = 200) {}

  add(events: readonly NewClusterEvent[], at: string): void {
    for (const e of events) this.events.push({ ...e, id: this.nextId++, at })
    if (this.events.length > this.capacity) this.events.splice(0, this.events.length - this.capacity)
  }

  /** Events with an id above `after`, oldest first. */
  since(after = 0): ClusterEvent[] {
    return this.events.filter((e) => e.id > after)
  }
}
