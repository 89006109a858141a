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
import { Transform, type TransformCallback } from 'node:stream'
import { pipeline } from 'node:stream/promises'
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

/**
 * Limits of the API (it binds loopback by default, but --api-host can put it on the LAN). A request body
 * of more than 64 MiB is no prompt a llama-server context holds (and base64 images fit easily); headers
 * above 16 KiB are Node's own default, stated here; a client has 10 s to send its headers and 30 s for the
 * whole request; 512 open connections at most.
 */
export const API_LIMITS = {
  maxBodyBytes: 64 * 1024 * 1024,
  maxHeaderBytes: 16 * 1024,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  maxConnections: 512
} as const

class BodyTooLargeError extends Error {
  constructor(got: string) {
    super(`Expected a request body of at most ${API_LIMITS.maxBodyBytes} bytes, got ${got}`)
  }
}

/** Passes bytes through until more than the body limit went by, then fails the pipeline. */
function bodyLimit(): Transform {
  let seen = 0
  return new Transform({
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      seen += chunk.length
      if (seen > API_LIMITS.maxBodyBytes) callback(new BodyTooLargeError('more'))
      else callback(null, chunk)
    }
  })
}

const sendTooLarge = (res: ServerResponse, err: BodyTooLargeError): void =>
  sendJson(res, 413, openAiError(err.message, 'invalid_request_error'), { connection: 'close' })

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
  const declared = Number(req.headers['content-length'] ?? 0)
  if (declared > API_LIMITS.maxBodyBytes) {
    sendTooLarge(res, new BodyTooLargeError(String(declared)))
    // The body is discarded, not buffered; the connection goes a second after the answer is out (at
    // once, a client still sending would see a reset before it reads the 413).
    req.resume()
    res.on('finish', () => setTimeout(() => req.destroy(), 1000).unref())
    return
  }
  // hop-by-hop headers belong to the client's connection, not to ours
  const { connection: _connection, 'keep-alive': _keepAlive, ...forwarded } = req.headers
  const headers = { ...forwarded, host: `${target.host}:${target.port}` }
  // A new connection per request (agent: false): llama-server's HTTP library closes a kept-alive
  // connection after a few requests, and a request sent on it as it closes failed with a 502 (2 in 48
  // streamed completions). Upstream is on loopback (or a tunnel entry there): a connection costs little.
  const outgoing = request({ host: target.host, port: target.port, method: req.method, path: req.url, headers, agent: false })
  // One answer per failure, whichever side fails first (the other side's error follows from it).
  let failed = false
  const fail = (err: Error): void => {
    if (failed) return
    failed = true
    outgoing.destroy()
    if (res.headersSent) res.destroy()
    else if (err instanceof BodyTooLargeError) sendTooLarge(res, err)
    else
      sendJson(res, 502, openAiError(`The coordinator's llama-server did not answer: ${err.message}`, 'bad_gateway'), {
        'retry-after': String(RETRY_AFTER_SECONDS)
      })
  }
  outgoing.on('error', fail)
  // A client that goes away stops the generation upstream too.
  res.on('close', () => {
    if (!res.writableFinished) outgoing.destroy()
  })
  outgoing.on('response', (incoming) => {
    res.writeHead(incoming.statusCode ?? 502, incoming.headers)
    // pipeline, not pipe: when llama-server aborts mid-answer the client's connection is cut (it sees an
    // error) instead of waiting for an end that never comes, and nothing stays open to block a stop.
    pipeline(incoming, res).catch(() => res.destroy())
  })
  await pipeline(req, bodyLimit(), outgoing).catch(fail)
}

export async function startHttpApi(o: HttpApiOptions): Promise<Server> {
  const server = createServer(
    // timeouts are enforced by a sweep; Node's default sweep (30 s) would let a slow client hold on 3x longer
    { maxHeaderSize: API_LIMITS.maxHeaderBytes, connectionsCheckingInterval: 1000 },
    (req, res) => {
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
    }
  )
  server.headersTimeout = API_LIMITS.headersTimeoutMs
  // Receiving a request (headers and body) must be quick; answering it (a long generation) need not.
  server.requestTimeout = API_LIMITS.requestTimeoutMs
  server.maxConnections = API_LIMITS.maxConnections
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(o.port, o.host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  return server
}
