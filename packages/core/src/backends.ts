/**
 * Which announced rpc-servers a coordinator may use. Pure. Only live announcements are considered (the
 * caller passes alive nodes); an rpc-server is never probed here, since a busy one cannot answer.
 */
import type { Announcement } from './announcement.js'

const USABLE_STATES = new Set(['ready', 'external'])

export interface RpcVersionNumbers {
  readonly major: number
  readonly minor: number
  readonly patch?: number
}

/** llama.cpp's own rule (ggml-rpc.cpp): same major, and the server's minor not newer than the client's. */
export function isCompatibleRpcVersion(client: RpcVersionNumbers, server: RpcVersionNumbers): boolean {
  return client.major === server.major && server.minor <= client.minor
}

/** The same rule on announced version strings (`6.0.0`). */
export function rpcProtocolCompatible(ours: string | null, theirs: string | null): boolean {
  if (ours === null || theirs === null) return false
  const [a, b] = [ours.split('.').map(Number), theirs.split('.').map(Number)]
  return isCompatibleRpcVersion({ major: a[0] ?? NaN, minor: a[1] ?? 0 }, { major: b[0] ?? NaN, minor: b[1] ?? 0 })
}

/**
 * Why `node` cannot be a backend of a llama-server built like `self` in `term`, or null when it can.
 * `term` undefined skips the fencing check (dry runs).
 */
export function exclusionReason(node: Announcement, self: Pick<Announcement, 'rpc'>, term: number | undefined): string | null {
  if (!USABLE_STATES.has(node.rpc.state)) return `rpc-server ${node.rpc.state}`
  if (node.rpc.protocol === null) return 'RPC protocol version unknown'
  if (!rpcProtocolCompatible(self.rpc.protocol, node.rpc.protocol)) {
    return `RPC protocol ${node.rpc.protocol} (llama.cpp ${node.rpc.llamaBuild}) does not match the coordinator's ${self.rpc.protocol ?? '?'} (llama.cpp ${self.rpc.llamaBuild}): run the same llama.cpp release on every machine`
  }
  if (term !== undefined && node.rpc.servingTerm !== term) return `rpc-server not yet restarted for term ${term} (fencing)`
  return null
}
