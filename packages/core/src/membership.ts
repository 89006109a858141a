/**
 * Who is in the cluster, from announcements and connection events. Pure: the clock is passed in,
 * nothing here does I/O. Rules:
 * - an announcement for another cluster, or older than what we hold, is ignored;
 * - heard: an announcement, or a heartbeat naming the announcement we hold (or a newer one);
 * - alive: heard within `silenceSuspectMs` and not disconnected;
 * - suspect: silent longer, or its last connection closed (a reconnect within the grace clears it);
 * - gone: silent `silenceGoneMs`, or disconnected for `disconnectGoneMs`. Gone nodes are removed.
 */
import { isNewer, type Announcement } from './announcement.js'
import type { MeshTimings } from './timings.js'

export type MemberStatus = 'alive' | 'suspect'

export interface Member {
  readonly announcement: Announcement
  /** When the newest announcement arrived (local clock). */
  readonly lastHeard: number
  /** undefined: we never had a direct connection (heard of it through gossip only). */
  readonly connected: boolean | undefined
  readonly disconnectedAt: number | undefined
}

export type MembershipEvent =
  | { readonly type: 'member:joined'; readonly peerId: string }
  | { readonly type: 'member:updated'; readonly peerId: string }
  | { readonly type: 'member:suspect'; readonly peerId: string }
  | { readonly type: 'member:alive'; readonly peerId: string }
  | { readonly type: 'member:left'; readonly peerId: string; readonly reason: 'silent' | 'disconnected' }

export type AnnouncementVerdict = 'applied' | 'stale' | 'other-cluster' | 'self'

export class Membership {
  private readonly members = new Map<string, Member>()
  private readonly statuses = new Map<string, MemberStatus>()

  constructor(
    readonly cluster: string,
    readonly selfPeerId: string,
    private readonly timings: Pick<MeshTimings, 'silenceSuspectMs' | 'silenceGoneMs' | 'disconnectGoneMs'>
  ) {}

  /** Applies an announcement that passed schema validation and was received from `from`. */
  onAnnouncement(a: Announcement, now: number): { verdict: AnnouncementVerdict; events: MembershipEvent[] } {
    if (a.cluster !== this.cluster) return { verdict: 'other-cluster', events: [] }
    if (a.peerId === this.selfPeerId) return { verdict: 'self', events: [] }
    const existing = this.members.get(a.peerId)
    if (existing !== undefined && !isNewer(a, existing.announcement)) {
      return { verdict: 'stale', events: [] }
    }
    this.members.set(a.peerId, {
      announcement: a,
      lastHeard: now,
      connected: existing?.connected,
      disconnectedAt: existing?.disconnectedAt
    })
    const events: MembershipEvent[] = [{ type: existing === undefined ? 'member:joined' : 'member:updated', peerId: a.peerId }]
    return { verdict: 'applied', events: [...events, ...this.tick(now)] }
  }

  /**
   * A heartbeat from a connected peer, saying which announcement it last made: the member is alive without
   * a new announcement. `behind`: we hold an older one, or none (the caller fetches it from the peer).
   * A beat older than what we hold (reordered, or from before a restart) changes nothing.
   */
  onHeartbeat(
    peerId: string,
    beat: Pick<Announcement, 'incarnation' | 'seq'>,
    now: number
  ): { behind: boolean; events: MembershipEvent[] } {
    if (peerId === this.selfPeerId) return { behind: false, events: [] }
    const member = this.members.get(peerId)
    if (member === undefined) return { behind: true, events: [] }
    if (isNewer(member.announcement, beat)) return { behind: false, events: [] }
    this.members.set(peerId, { ...member, lastHeard: now })
    return { behind: isNewer(beat, member.announcement), events: this.evaluate(peerId, now) }
  }

  onConnected(peerId: string, now: number): MembershipEvent[] {
    const member = this.members.get(peerId)
    if (member !== undefined) this.members.set(peerId, { ...member, connected: true, disconnectedAt: undefined })
    return this.tick(now)
  }

  onDisconnected(peerId: string, now: number): MembershipEvent[] {
    const member = this.members.get(peerId)
    if (member !== undefined) this.members.set(peerId, { ...member, connected: false, disconnectedAt: now })
    return this.tick(now)
  }

  /** Status of a member at `now`, or 'gone'. Pure function of the stored facts. */
  statusAt(member: Member, now: number): MemberStatus | 'gone' {
    const silence = now - member.lastHeard
    if (silence >= this.timings.silenceGoneMs) return 'gone'
    if (member.connected === false && member.disconnectedAt !== undefined) {
      return now - member.disconnectedAt >= this.timings.disconnectGoneMs ? 'gone' : 'suspect'
    }
    return silence >= this.timings.silenceSuspectMs ? 'suspect' : 'alive'
  }

  /** Re-evaluates every member; removes the gone ones. Returns the transitions. */
  tick(now: number): MembershipEvent[] {
    const events: MembershipEvent[] = []
    for (const peerId of [...this.members.keys()]) events.push(...this.evaluate(peerId, now))
    return events
  }

  /** The transitions of one member at `now` (a heartbeat re-evaluates only its sender: 20,000 a second in the simulation). */
  private evaluate(peerId: string, now: number): MembershipEvent[] {
    const member = this.members.get(peerId)
    if (member === undefined) return []
    const status = this.statusAt(member, now)
    const before = this.statuses.get(peerId)
    if (status === 'gone') {
      this.members.delete(peerId)
      this.statuses.delete(peerId)
      const reason = member.connected === false ? 'disconnected' : 'silent'
      return [{ type: 'member:left', peerId, reason }]
    }
    if (before === status) return []
    this.statuses.set(peerId, status)
    return before !== undefined || status === 'suspect' ? [{ type: status === 'alive' ? 'member:alive' : 'member:suspect', peerId }] : []
  }

  get(peerId: string): Member | undefined {
    return this.members.get(peerId)
  }

  /** Members with their status, sorted by peer id (stable output). */
  list(now: number): Array<Member & { status: MemberStatus }> {
    return [...this.members.values()]
      .map((m) => ({ ...m, status: this.statusAt(m, now) }))
      .filter((m): m is Member & { status: MemberStatus } => m.status !== 'gone')
      .sort((a, b) => (a.announcement.peerId < b.announcement.peerId ? -1 : 1))
  }
}
