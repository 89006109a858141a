/**
 * Membership timing presets. Production uses LAN_MESH_TIMINGS; tests pass FAST_MESH_TIMINGS or their
 * own. Bounds promised to users: a killed agent leaves every view within 5 s, a frozen or unplugged one
 * within 10 s, a restarted one is back within 5 s of its start.
 */
export interface MeshTimings {
  /** Full announcement period (also sent at once on any change). It doubles as the heartbeat. */
  readonly announceIntervalMs: number
  /** A connected peer silent this long is suspect. */
  readonly silenceSuspectMs: number
  /** A peer silent this long is gone, connected or not (frozen process, half-open TCP). */
  readonly silenceGoneMs: number
  /** A peer whose last connection closed this long ago, and that did not come back, is gone. */
  readonly disconnectGoneMs: number
  /** libp2p connection monitor: ping period and timeout (how a frozen peer's connection gets closed). */
  readonly pingIntervalMs: number
  readonly pingTimeoutMs: number
  /** mDNS query period; every node answers every query, so this is N^2 traffic. */
  readonly mdnsIntervalMs: number
  /** How often known but unconnected peers are redialled. */
  readonly redialIntervalMs: number
}

export const LAN_MESH_TIMINGS: MeshTimings = {
  announceIntervalMs: 2000,
  silenceSuspectMs: 5000,
  // frozen: a frozen peer's kernel keeps its TCP connection open; silence is what removes it (8 s)
  silenceGoneMs: 8000,
  // SIGKILL closes TCP at once (10-25 ms); 1.5 s lets a flapping link reconnect without a leave/join
  disconnectGoneMs: 1500,
  // a 1 s ping timeout dropped healthy connections under start-up CPU load on 2 cores; a ping every 2 s
  // was a quarter of an idle agent's CPU in a 10-agent mesh (a stream per ping per connection). Silence
  // (silenceGoneMs) is what bounds the detection of a frozen peer; pings only close its dead connection.
  pingIntervalMs: 10_000,
  // libp2p aborts a connection whose ping times out, and a ping waits behind whatever the connection is
  // carrying: 500 MB of weights through the tunnel on a busy 2-core machine delayed pings past 2 s and the
  // cut connection aborted the model load ("Remote RPC server crashed"). A dead connection still goes
  // within 20 s; membership does not wait for it.
  pingTimeoutMs: 10_000,
  // every agent answers every query and every answer reaches every agent (N^3 work per period); a newcomer
  // queries at its start and known peers are redialled, so the period only heals rare losses
  mdnsIntervalMs: 30_000,
  redialIntervalMs: 2000
}

export const FAST_MESH_TIMINGS: MeshTimings = {
  announceIntervalMs: 500,
  silenceSuspectMs: 1500,
  silenceGoneMs: 3000,
  disconnectGoneMs: 500,
  pingIntervalMs: 1000,
  pingTimeoutMs: 1500,
  mdnsIntervalMs: 1000,
  redialIntervalMs: 500
}
