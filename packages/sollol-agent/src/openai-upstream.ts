/**
 * Where this agent forwards OpenAI requests: the coordinator's llama-server, on this machine or through
 * a mesh tunnel to the coordinator (one tunnel, replaced when the coordinator changes).
 */
import type { CoordinationPart } from '@sollol/core'
import type { Mesh } from '@sollol/mesh'
import type { Upstream } from './http-api.js'

export interface OpenAiUpstreamOptions {
  readonly mesh: Pick<Mesh, 'peerId' | 'openTunnel'>
  /** The coordination as this agent sees it now. */
  readonly coordination: () => CoordinationPart | undefined
  /** This machine's llama-server port (when it coordinates). */
  readonly serverPort: number
}

export class OpenAiUpstream {
  private tunnel: { peerId: string; entry: { port: number; close: () => Promise<void> } } | undefined

  constructor(private readonly o: OpenAiUpstreamOptions) {}

  async resolve(): Promise<Upstream> {
    const view = this.o.coordination()
    if (view === undefined || view.coordinator === null) return { unavailable: view?.problem ?? 'no coordinator elected yet' }
    if (view.plan === null || view.plan.server.state !== 'ready') {
      return {
        unavailable:
          view.plan === null
            ? (view.problem ?? 'no plan yet')
            : `the llama-server is ${view.plan.server.state}${view.plan.server.detail !== null ? ` (${view.plan.server.detail})` : ''}`
      }
    }
    const coordinator = view.coordinator.peerId
    if (coordinator === this.o.mesh.peerId) return { host: '127.0.0.1', port: this.o.serverPort }
    if (this.tunnel?.peerId !== coordinator) {
      const previous = this.tunnel
      this.tunnel = { peerId: coordinator, entry: await this.o.mesh.openTunnel(coordinator, 'openai') }
      await previous?.entry.close()
    }
    return { host: '127.0.0.1', port: this.tunnel.entry.port }
  }

  async close(): Promise<void> {
    await this.tunnel?.entry.close()
    this.tunnel = undefined
  }
}
