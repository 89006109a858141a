/**
 * Who coordinates. Pure: facts in (claims seen in announcements, who is alive, the clock), a decision
 * out. Rules:
 * - every claim carries a term; anything from an older term is ignored;
 * - the incumbent keeps the role while it is alive (no flapping when a stronger node joins);
 * - with no live coordinator, eligible nodes (holding the cluster's model and a llama-server) claim in
 *   rank order: the best after `claimStaggerMs`, the next one a stagger later if the best stays silent;
 * - two claims of one term: the lower peer id wins, everywhere, so all agree without a round trip;
 * - a claimant acts (starts llama-server) only after `settleMs` with no competing claim, unless no other
 *   member that has not left (alive or suspect) could claim at all: then no competing claim can come and
 *   it acts at once (a coordinator's loss with one other model holder costs no settle period);
 * - a node that just started observes for `startupQuietMs` before it may claim, so a restarted old
 *   coordinator learns the current term instead of claiming a stale one.
 */
import type { Announcement, ModelRef } from './announcement.js'

export interface ElectionTimings {
  readonly settleMs: number
  readonly claimStaggerMs: number
  readonly startupQuietMs: number
}

export const LAN_ELECTION_TIMINGS: ElectionTimings = {
  // two announcement rounds: a competing claim made at the same moment has arrived by then
  settleMs: 2500,
  claimStaggerMs: 2000,
  startupQuietMs: 3000
}

export const FAST_ELECTION_TIMINGS: ElectionTimings = { settleMs: 600, claimStaggerMs: 500, startupQuietMs: 800 }

/** How far ahead of what we know a term may be and still count, heard second-hand or claimed. */
export const MAX_HEARSAY_JUMP = 100

/**
 * No term above this is accepted or claimed: a term a second would take 35,000 years to get there, and
 * `term + 1` stays exact far beyond it (a claim of 2^53 - 1 would leave no higher term to elect).
 */
export const MAX_TERM = 2 ** 40

export type Role = 'observing' | 'follower' | 'waiting' | 'settling' | 'coordinator'

export interface Decision {
  readonly role: Role
  /** Set when this node should announce a claim of this term now. */
  readonly claimTerm?: number
  readonly coordinator: { readonly peerId: string; readonly term: number } | null
}

/** The model the cluster serves: the one most coordinate-capable nodes hold; ties by id. Pure. */
export function clusterModel(announcements: readonly Announcement[]): ModelRef | undefined {
  const counts = new Map<string, { model: ModelRef; count: number }>()
  for (const a of announcements) {
    if (!a.canCoordinate) continue
    for (const model of a.models) {
      const entry = counts.get(model.id) ?? { model, count: 0 }
      entry.count++
      counts.set(model.id, entry)
    }
  }
  return [...counts.values()].sort((x, y) => y.count - x.count || (x.model.id < y.model.id ? -1 : 1))[0]?.model
}

const accelerator = (a: Announcement): number => a.devices.filter((d) => d.kind !== 'cpu').reduce((sum, d) => sum + d.memoryTotal, 0)

/**
 * Best coordinator first: the host keeps the embeddings and runs the graph, so prefer strong devices
 * (accelerator memory, then measured speed, then offered memory), then the lower peer id. Pure.
 */
export function rankCandidates(announcements: readonly Announcement[], modelId: string): Announcement[] {
  return announcements
    .filter((a) => a.canCoordinate && a.models.some((m) => m.id === modelId))
    .sort(
      (x, y) =>
        accelerator(y) - accelerator(x) ||
        (x.speed?.secondsPerGiB ?? Infinity) - (y.speed?.secondsPerGiB ?? Infinity) ||
        y.memoryBudget - x.memoryBudget ||
        (x.peerId < y.peerId ? -1 : 1)
    )
}

export class Election {
  private term = 0
  private coordinatorId: string | undefined
  /** When the current coordinator's claim was first seen (a claimant settles from here). */
  private since = 0
  /** When we first saw no live coordinator. */
  private vacantSince: number | undefined
  /** The highest term any announcement mentioned. */
  private seenTerm = 0

  constructor(
    readonly selfPeerId: string,
    private readonly timings: ElectionTimings,
    private readonly startedAt: number
  ) {}

  get currentTerm(): number {
    return this.term
  }
  get coordinator(): string | undefined {
    return this.coordinatorId
  }

  /**
   * Learns from an announcement: a node's own claim (coordinator.peerId === its peerId) is a claim;
   * every announcement also tells the highest term its sender has seen. Returns true when the
   * coordinator or term changed.
   */
  observe(a: Pick<Announcement, 'peerId' | 'coordinator'>, now: number): boolean {
    const belief = a.coordinator
    if (belief === null) return false
    if (belief.peerId === a.peerId) return this.onClaim(belief.term, a.peerId, now)
    // Hearsay is no claim, but a later claim of ours must beat the term the others believe in. Bounded:
    // one peer's word must not push every later term towards the integer limit.
    if (this.believable(belief.term)) this.seenTerm = Math.max(this.seenTerm, belief.term)
    return false
  }

  /**
   * A term we may believe: within the term space, and at most MAX_HEARSAY_JUMP above what we know. Not
   * "one above": a node that missed a few elections (a partition, a freeze) must follow the coordinator
   * at once rather than no one. A node that knows no term yet (it just started) believes any term in the
   * space: it cannot tell, and the cluster's announcements are all it has.
   */
  private believable(term: number): boolean {
    if (!Number.isSafeInteger(term) || term < 1 || term > MAX_TERM) return false
    const known = Math.max(this.term, this.seenTerm)
    return known === 0 || term <= known + MAX_HEARSAY_JUMP
  }

  onClaim(term: number, peerId: string, now: number): boolean {
    if (term < this.term || !this.believable(term)) return false
    if (term > this.term) {
      this.term = term
      this.coordinatorId = peerId
      this.since = now
      this.vacantSince = undefined
      return true
    }
    // Same term, two claimants: the lower peer id wins everywhere.
    if (this.coordinatorId === undefined || peerId < this.coordinatorId) {
      const changed = this.coordinatorId !== peerId
      this.coordinatorId = peerId
      if (changed) this.since = now
      return changed
    }
    return false
  }

  /**
   * The decision at `now`. `alive` holds the peer ids currently alive (self included);
   * `candidates` are the eligible nodes, best first (see rankCandidates). `contenders`: the eligible nodes
   * among all that have not left, suspect ones included (default `candidates`): when self is the only one,
   * its claim needs no settle period.
   */
  decide(alive: ReadonlySet<string>, candidates: readonly string[], now: number, contenders: readonly string[] = candidates): Decision {
    const current = this.coordinatorId
    if (current !== undefined && (current === this.selfPeerId || alive.has(current))) {
      const coordinator = { peerId: current, term: this.term }
      if (current !== this.selfPeerId) return { role: 'follower', coordinator }
      return { role: now - this.since >= this.timings.settleMs ? 'coordinator' : 'settling', coordinator }
    }
    this.vacantSince ??= now
    if (now - this.startedAt < this.timings.startupQuietMs) return { role: 'observing', coordinator: null }
    const position = candidates.indexOf(this.selfPeerId)
    if (position === -1) return { role: 'follower', coordinator: null }
    if (now - this.vacantSince < position * this.timings.claimStaggerMs) return { role: 'waiting', coordinator: null }
    const next = Math.max(this.term, this.seenTerm) + 1
    if (next > MAX_TERM) return { role: 'follower', coordinator: null } // unreachable in practice (see MAX_TERM)
    this.term = next
    this.coordinatorId = this.selfPeerId
    // the claim is announced either way; alone, it acts at the next decision
    this.since = contenders.every((id) => id === this.selfPeerId) ? now - this.timings.settleMs : now
    this.vacantSince = undefined
    return { role: 'settling', claimTerm: this.term, coordinator: { peerId: this.selfPeerId, term: this.term } }
  }
}
