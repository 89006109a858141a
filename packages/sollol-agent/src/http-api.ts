/**
 * The agent's local HTTP API. Binds 127.0.0.1 unless told otherwise. Routes:
 * - GET /: the dashboard (one static page that polls the two routes below).
 * - GET /v1/cluster: the state JSON; GET /v1/events?after=N: recent cluster events; GET /v1/plan: a
 *   dry-run plan; GET /healthz; GET /metrics (Prometheus).
 * - The OpenAI API (/v1/models, /v1/chat/completions, /v1/completions, /v1/embeddings): forwarded to the
 *   coordinator's llama-server, through the mesh when the coordinator is another machine, so a client can
 *   use any agent. Bodies and streamed (SSE) answers are piped as they come; with nobody serving, a 503
 *   with the reason and Retry-After.
 */
import { readFileSync } from 'node:fs'
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { ClusterEvent, ClusterView, Plan } from '@sollol/core'
import type { AgentMetrics } from './metrics.js'

/** Where to send OpenAI requests now, or why they cannot be served. */
export type Upstream = { readonly host: string; readonly port: number } | { readonly unavailable: string }

export interface HttpApiOptions {
  readonly host: string
  readonly port: number
  readonly view: () => ClusterView
  /** Cluster events with an id above `after`, oldest first. */
  readonly events: (after: number) => readonly ClusterEvent[]
  /** A dry-run plan for the current cluster (GET /v1/plan). */
  readonly plan: () => Promise<Plan>
  readonly upstream: () => Promise<Upstream>
  readonly metrics: AgentMetrics
}

const OPENAI_ROUTES = new Set(['/v1/models', '/v1/chat/completions', '/v1/completions', '/v1/embeddings'])
const RETRY_AFTER_SECONDS = 5
// Read once: the page is static (dist/http-api.js -> ../assets/dashboard.html, also in the npm package).
const DASHBOARD = readFileSync(new URL('../assets/dashboard.html', import.meta.url))

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers })
  res.end(JSON.stringify(body, null, 2) + '\n')
}

/** OpenAI-style error body, so that clients show the reason. */
const openAiError = (message: string, type: string): unknown => ({ error: { message, type, code: null } })

async function forward(
  req: IncomingMessage,
  res: ServerResponse,
  upstream: () => Promise<Upstream>,
  metrics: AgentMetrics,
  route: string
): Promise<void> {
  const end = metrics.proxyLatency.startTimer({ route })
  res.on('close', () => {
    end()
    metrics.proxyRequests.inc({ route, status: String(res.statusCode) })
  })
  const target = await upstream()
  if ('unavailable' in target) {
    sendJson(res, 503, openAiError(`The cluster is not serving: ${target.unavailable}`, 'unavailable'), {
      'retry-after': String(RETRY_AFTER_SECONDS)
    })
    req.resume()
    return
  }
  const headers = { ...req.headers, host: `${target.host}:${target.port}` }
  const outgoing = request({ host: target.host, port: target.port, method: req.method, path: req.url, headers }, (incoming) => {
    res.writeHead(incoming.statusCode ?? 502, incoming.headers)
    incoming.pipe(res)
  })
  outgoing.on('error', (err) => {
    if (!res.headersSent)
      sendJson(res, 502, openAiError(`The coordinator's llama-server did not answer: ${err.message}`, 'bad_gateway'), {
        'retry-after': String(RETRY_AFTER_SECONDS)
      })
    else res.destroy()
  })
  // A client that goes away stops the generation upstream too.
  res.on('close', () => {
    if (!res.writableFinished) outgoing.destroy()
  })
  req.pipe(outgoing)
}

export async function startHttpApi(o: HttpApiOptions): Promise<Server> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/'
    if (OPENAI_ROUTES.has(path)) {
      forward(req, res, o.upstream, o.metrics, path).catch((err: Error) => sendJson(res, 500, openAiError(err.message, 'internal')))
      return
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      sendJson(res, 405, { error: `Expected GET, got ${req.method ?? '?'}` })
      return
    }
    if (path === '/' || path === '/index.html') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' })
      res.end(DASHBOARD)
      return
    }
    if (path === '/v1/events') {
      const after = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('after') ?? '0')
      sendJson(res, 200, { events: o.events(Number.isSafeInteger(after) && after >= 0 ? after : 0) })
      return
    }
    if (path === '/v1/cluster') {
      sendJson(res, 200, o.view())
      return
    }
    if (path === '/v1/plan') {
      o.plan().then(
        (p) => sendJson(res, 200, p),
        (err: Error) => sendJson(res, 409, { error: err.message })
      )
      return
    }
    if (path === '/metrics') {
      o.metrics.text().then(
        (text) => {
          res.writeHead(200, { 'content-type': o.metrics.registry.contentType })
          res.end(text)
        },
        (err: Error) => sendJson(res, 500, { error: err.message })
      )
      return
    }
    if (path === '/healthz') {
      sendJson(res, 200, { ok: true })
      return
    }
    sendJson(res, 404, { error: `No route ${path}; try /v1/cluster` })
  })
  server.headersTimeout = 10_000
  // Receiving a request (headers and body) must be quick; answering it (a long generation) need not.
  server.requestTimeout = 30_000
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(o.port, o.host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  return server
}
