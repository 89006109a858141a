/**
 * Prometheus metrics at /metrics on every agent (prom-client). Values are read from the agent's state
 * when scraped; the coordinator appends its llama-server's own metrics (llama.cpp's `llamacpp:` series).
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client'
import type { ClusterView } from '@sollol/core'

export interface MetricsSources {
  readonly view: () => ClusterView
  readonly rpcRestarts: () => number
  /** Weights relayed to this agent's rpc-server: in all, and in its last load. */
  readonly relayed: () => { totalBytes: number; lastLoadBytes: number | null; cacheBytes: number | null }
  readonly llama: () => {
    serving: boolean
    causes: Readonly<Record<string, number>>
    metricsUrl: string | undefined
    /** llama-server's bearer token (--api-token): its /metrics wants it too. */
    token: string | undefined
  }
}

export class AgentMetrics {
  readonly registry = new Registry()
  readonly proxyRequests = new Counter({
    name: 'sollol_openai_requests_total',
    help: 'OpenAI API requests forwarded by this agent',
    labelNames: ['route', 'status'],
    registers: [this.registry]
  })
  readonly proxyLatency = new Histogram({
    name: 'sollol_openai_request_seconds',
    help: 'Time to the end of a forwarded OpenAI response',
    labelNames: ['route'],
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
    registers: [this.registry]
  })

  constructor(private readonly sources: MetricsSources) {
    const registers = [this.registry]
    const s = sources
    new Gauge({
      name: 'sollol_cluster_nodes',
      help: "Nodes in this agent's view, by status",
      labelNames: ['status'],
      registers,
      collect() {
        const counts: Record<string, number> = { self: 0, alive: 0, suspect: 0 }
        for (const n of s.view().nodes) counts[n.status] = (counts[n.status] ?? 0) + 1
        for (const [status, count] of Object.entries(counts)) this.set({ status }, count)
      }
    })
    new Gauge({
      name: 'sollol_coordinator_term',
      help: 'Term of the coordinator this agent follows (0: none)',
      registers,
      collect() {
        this.set(s.view().coordinator?.term ?? 0)
      }
    })
    new Gauge({
      name: 'sollol_plan_generation',
      help: 'Generation of the current plan (0: none)',
      registers,
      collect() {
        this.set(s.view().plan?.generation ?? 0)
      }
    })
    new Counter({
      name: 'sollol_rpc_server_restarts_total',
      help: "Restarts of this agent's rpc-server after a crash",
      registers,
      collect() {
        this.reset()
        this.inc(s.rpcRestarts())
      }
    })
    new Counter({
      name: 'sollol_rpc_weight_bytes_received_total',
      help: "Model weight bytes that reached this agent's rpc-server over the LAN (through its gate or tunnel)",
      registers,
      collect() {
        this.reset()
        this.inc(s.relayed().totalBytes)
      }
    })
    new Gauge({
      name: 'sollol_rpc_last_load_weight_bytes',
      help: "Weight bytes the last model load sent to this agent's rpc-server over the LAN (the rest came from its tensor cache)",
      registers,
      collect() {
        this.set(s.relayed().lastLoadBytes ?? 0)
      }
    })
    new Gauge({
      name: 'sollol_rpc_tensor_cache_bytes',
      help: "Size of this agent's rpc-server tensor cache",
      registers,
      collect() {
        this.set(s.relayed().cacheBytes ?? 0)
      }
    })
    new Gauge({
      name: 'sollol_cluster_weights_over_lan_bytes',
      help: "Weight bytes the current plan's load sent over the LAN, summed over its nodes",
      registers,
      collect() {
        this.set(s.view().weightsOverLan?.bytes ?? 0)
      }
    })
    new Gauge({
      name: 'sollol_llama_server_up',
      help: "1 while this agent runs the cluster's llama-server and it answers",
      registers,
      collect() {
        this.set(s.llama().serving ? 1 : 0)
      }
    })
    new Counter({
      name: 'sollol_llama_server_starts_total',
      help: 'llama-server starts on this agent (re-plans), by cause',
      labelNames: ['cause'],
      registers,
      collect() {
        this.reset()
        for (const [cause, count] of Object.entries(s.llama().causes)) this.inc({ cause }, count)
      }
    })
    new Counter({
      name: 'sollol_gossip_messages_total',
      help: 'Announcements received and published',
      labelNames: ['direction'],
      registers,
      collect() {
        const c = s.view().counters
        this.reset()
        this.inc({ direction: 'in' }, c?.announcementsIn ?? 0)
        this.inc({ direction: 'out' }, c?.announcementsOut ?? 0)
      }
    })
    new Counter({
      name: 'sollol_heartbeats_total',
      help: 'Heartbeats (incarnation and seq, to each watched ring neighbour each interval) received and sent',
      labelNames: ['direction'],
      registers,
      collect() {
        const c = s.view().counters
        this.reset()
        this.inc({ direction: 'in' }, c?.heartbeatsIn ?? 0)
        this.inc({ direction: 'out' }, c?.heartbeatsOut ?? 0)
      }
    })
    new Counter({
      name: 'sollol_liveness_reports_total',
      help: 'Liveness reports about watched ring neighbours: sent, received, and taken (acted on); refuted: about this agent, answered by announcing again',
      labelNames: ['kind'],
      registers,
      collect() {
        const c = s.view().counters
        this.reset()
        this.inc({ kind: 'sent' }, c?.livenessReportsOut ?? 0)
        this.inc({ kind: 'received' }, c?.livenessReportsIn ?? 0)
        this.inc({ kind: 'taken' }, c?.livenessReportsTaken ?? 0)
        this.inc({ kind: 'refuted' }, c?.refutations ?? 0)
      }
    })
    new Counter({
      name: 'sollol_gossip_dropped_total',
      help: 'Inbound messages dropped at the boundary, by reason',
      labelNames: ['reason'],
      registers,
      collect() {
        this.reset()
        // reasons are a fixed set of kinds (the mesh counts them so), so the label stays bounded
        for (const [reason, count] of Object.entries(s.view().counters?.dropReasons ?? {})) this.inc({ reason }, count)
      }
    })
  }

  /** The exposition text: ours, then llama-server's own when this agent serves. */
  async text(): Promise<string> {
    const ours = await this.registry.metrics()
    const { metricsUrl: url, token } = this.sources.llama()
    if (url === undefined) return ours
    try {
      const response = await fetch(url, {
        signal: AbortSignal.timeout(2000),
        ...(token !== undefined ? { headers: { authorization: `Bearer ${token}` } } : {})
      })
      return response.ok ? `${ours}\n${await response.text()}` : ours
    } catch {
      return ours
    }
  }
}
