/**
 * The agent's local HTTP API. Binds 127.0.0.1 unless told otherwise: it describes the cluster and,
 * later, controls it. Routes: GET /v1/cluster (the state JSON), GET /healthz.
 */
import { createServer, type Server } from 'node:http'
import type { ClusterView, Plan } from '@sollol/core'

export interface HttpApiOptions {
  readonly host: string
  readonly port: number
  readonly view: () => ClusterView
  /** A dry-run plan for the current cluster (GET /v1/plan). */
  readonly plan: () => Promise<Plan>
}

export async function startHttpApi(o: HttpApiOptions): Promise<Server> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]
    const send = (status: number, body: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' })
      res.end(JSON.stringify(body, null, 2) + '\n')
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      send(405, { error: `Expected GET, got ${req.method ?? '?'}` })
      return
    }
    if (path === '/v1/cluster') {
      send(200, o.view())
      return
    }
    if (path === '/v1/plan') {
      o.plan().then(
        (p) => send(200, p),
        (err: Error) => send(409, { error: err.message })
      )
      return
    }
    if (path === '/healthz') {
      send(200, { ok: true })
      return
    }
    send(404, { error: `No route ${path}; try /v1/cluster` })
  })
  server.headersTimeout = 10_000
  server.requestTimeout = 10_000
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(o.port, o.host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  return server
}
