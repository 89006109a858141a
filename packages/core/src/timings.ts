/**
 * Membership timing presets. Production uses LAN_MESH_TIMINGS; tests pass FAST_MESH_TIMINGS or their
 * own. Bounds promised to users: a killed agent leaves every view within 5 s, a frozen or unplugged one
 * within 10 s, a restarted one is back within 5 s of its start.
 */
export interface MeshTimings {
  /**
   * Heartbeat period: every connected member gets a few bytes (incarnation and seq) on a long-lived stream,
   * which is what keeps a member alive. The announcement is checked for changes at this period too and
   * gossiped only when it changed (or when asked, or every `announceRefreshMs`).
   */
  readonly announceIntervalMs: number
  /** The full announcement is gossiped again this often even when nothing changed (a lost message heals). */
  readonly announceRefreshMs: number
  /** A connected peer silent this long is suspect. */
  readonly silenceSuspectMs: number
  /** A peer silent this long is gone, connected or not (frozen process, half-open TCP). */
  readonly silenceGoneMs: number
  /** A peer whose last connection closed this long ago, and that did not come back, is gone. */
  readonly disconnectGoneMs: number
  /** libp2p connection monitor: ping period and timeout (how a frozen peer's connection gets closed). */
  readonly pingIntervalMs: number
  readonly pingTimeoutMs: number
  /** mDNS query period (each agent's own is spread over 0.5-1.5x: mdnsQueryIntervalMs); every node answers every query, so this is N^2 traffic. */
  readonly mdnsIntervalMs: number
  /** How often known but unconnected peers are redialled. */
  readonly redialIntervalMs: number
}

export const LAN_MESH_TIMINGS: MeshTimings = {
  announceIntervalMs: 2000,
  // at rest, 20 agents gossiping 2 kB every 2 s cost each agent ~200 kB/s; heartbeats carry liveness and
  // the seq, so a missed change is fetched from its owner, and the refresh is only a safety net (every
  // refresh reaches every agent several times over gossipsub's mesh: at 60 s, ~1 kB/s per agent with 20)
  announceRefreshMs: 300_000,
  silenceSuspectMs: 5000,
  // frozen: a frozen peer's kernel keeps its TCP connection open; silence is what removes it (8 s)
  silenceGoneMs: 8000,
  // SIGKILL closes TCP at once (10-25 ms); 1.5 s lets a flapping link reconnect without a leave/join
  disconnectGoneMs: 1500,
  // a 1 s ping timeout dropped healthy connections under start-up CPU load on 2 cores; a ping every 2 s
  // was a quarter of an idle agent's CPU in a 10-agent mesh (a stream per ping per connection, ~600 bytes
  // on the wire). Silence (no heartbeat: silenceGoneMs) is what bounds the detection of a frozen peer;
  // pings only close its dead connection, so they can be rare (at 30 s they were ~1.3 kB/s per agent at
  // rest with 20 agents: a new stream each, five segments and their ACKs)
  pingIntervalMs: 120_000,
  // libp2p aborts a connection whose ping times out, and a ping waits behind whatever the connection is
  // carrying: 500 MB of weights through the tunnel on a busy 2-core machine delayed pings past 2 s and the
  // cut connection aborted the model load ("Remote RPC server crashed"). A dead connection still goes
  // within 20 s; membership does not wait for it.
  pingTimeoutMs: 10_000,
  // every agent answers every query and every answer reaches every agent (N^2 packets per period: at 30 s,
  // 5.7 kB/s per agent at rest with 20 agents, at 120 s 1.2-1.4 kB/s); a newcomer queries at its start,
  // known peers are redialled and a join makes every member gossip its addresses again, so the period only
  // heals rare losses, and a lone agent hears the answers to every member's query (20 agents: one every 15 s
  // or so). Each agent's own period is drawn from 150-450 s so that rounds do not stay aligned
  // (mdnsQueryIntervalMs)
  mdnsIntervalMs: 300_000,
  redialIntervalMs: 2000
}

export const FAST_MESH_TIMINGS: MeshTimings = {
  announceIntervalMs: 500,
  announceRefreshMs: 5000,
  silenceSuspectMs: 1500,
  silenceGoneMs: 3000,
  disconnectGoneMs: 500,
  pingIntervalMs: 1000,
  pingTimeoutMs: 1500,
  mdnsIntervalMs: 1000,
  redialIntervalMs: 500
}

/**
 * Several meshes in one test process over loopback (the in-process harness): fast, and tolerant of one
 * process carrying every node on a busy machine (its event loop serves them all).
 */
export const IN_PROCESS_MESH_TIMINGS: MeshTimings = {
  announceIntervalMs: 400,
  announceRefreshMs: 10_000,
  silenceSuspectMs: 2000,
  silenceGoneMs: 4000,
  disconnectGoneMs: 500,
  pingIntervalMs: 10_000,
  pingTimeoutMs: 10_000,
  mdnsIntervalMs: 60_000,
  redialIntervalMs: 400
}

/**
 * One agent's mDNS query period: the preset's period spread over [0.5, 1.5) of it by `random` (in [0, 1)).
 * @libp2p/mdns queries at start and then on a fixed interval, and every agent answers every query, so agents
 * started together kept querying in the same second for ever: with 20 agents a round is 400 answers, each
 * heard by all, and a 15 s window that held one measured 16.5 kB/s and 6 % of a core per agent at rest
 * (a capture on one host: 9.8 kB/s of mDNS in the busiest 15 s, 3.4 kB/s once spread).
 * Spread, the rounds drift apart after the first and a window holds its share of them.
 */
export function mdnsQueryIntervalMs(timings: MeshTimings, random: number): number {
  return drawnBetween(timings.mdnsIntervalMs * 0.5, timings.mdnsIntervalMs * 1.5, random)
}

/**
 * When the next slow refresh of this agent's announcement is due, after a publish: drawn from [0.5, 1] of
 * `announceRefreshMs` each time. Agents started together published together and refreshed together every
 * period (20 announcements relayed to every agent within seconds: a 15 s window 5 minutes after the
 * bench's join measured 14 kB/s per agent). Never later than the period: a member that nobody watches is
 * gone after two periods without one (membership.ts).
 */
export function announceRefreshDueMs(timings: MeshTimings, random: number): number {
  return drawnBetween(timings.announceRefreshMs * 0.5, timings.announceRefreshMs, random)
}

/** A whole number of ms from `lowMs` to `highMs` by `random` (in [0, 1); clamped, so never outside). */
function drawnBetween(lowMs: number, highMs: number, random: number): number {
  return Math.round(lowMs + (highMs - lowMs) * Math.min(Math.max(random, 0), 1))
}
