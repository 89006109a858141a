/**
 * Who is in the cluster, from announcements and connection events. Pure: the clock is passed in,
 * nothing here does I/O. Rules:
 * - an announcement for another cluster, or older than what we hold, is ignored;
 * - heard: an announcement, or a heartbeat naming the announcement we hold (or a newer one);
 * - watched: the members we beat and expect beats from, our ring neighbours (liveness.ts), and every member
 *   that beats all (it does not announce `heartbeats`). Silence counts only for them, from when we began to
 *   watch them; for the others, their watchers' reports stand in for it;
 * - alive: heard within `silenceSuspectMs` (watched) and not disconnected, nor reported suspect;
 * - suspect: silent longer, or its last connection closed (a reconnect within the grace clears it), or
 *   reported suspect by a watcher (for `silenceGoneMs` at most: a watcher that died says nothing more);
 * - gone: silent `silenceGoneMs` (watched), reported gone by a watcher, disconnected for `disconnectGoneMs`,
 *   or, never watched, not heard for two announcement refreshes and the silence bound (every member
 *   announces at least once per refresh: a member whose watchers all vanished with it still goes).
 *   Gone nodes are removed.
 */
import { isNewer, type Announcement } from './announcement.js'
import { ringNeighbours, RING_PER_SIDE, type LivenessReport } from './liveness.js'
import type { MeshTimings } from './timings.js'

export type MemberStatus = 'alive' | 'suspect'

export interface Member {
  readonly announcement: Announcement
  /**
   * When the member was last heard from (local clock): its announcement or a heartbeat. In `list()`, a
   * member that its watchers vouch for (no report against it) counts as heard now.
   */
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
  /** The members we watch, with when we began to (a new neighbour's silence counts from then). */
  private readonly watchedSince = new Map<string, number>()
  /** Members a watcher reported suspect, with when (for members we do not watch). */
  private readonly reportedSuspect = new Map<string, number>()
  /** Members we watch and reported suspect: their recovery is reported too. */
  private readonly weReportedSuspect = new Set<string>()
  /** Reports to send about the members we watch (taken by the mesh). */
  private outbox: LivenessReport[] = []
  /** The ring changed (a member came, went, or changed how it beats) since `watchedSince` was computed. */
  private ringChanged = true

  constructor(
    readonly cluster: string,
    readonly selfPeerId: string,
    private readonly timings: Pick<MeshTimings, 'silenceSuspectMs' | 'silenceGoneMs' | 'disconnectGoneMs'> &
      Partial<Pick<MeshTimings, 'announceRefreshMs'>>,
    private readonly ringPerSide: number = RING_PER_SIDE
  ) {}

  /** The members on the ring (those that announce `heartbeats`), self included. */
  private ring(): string[] {
    const ids = [this.selfPeerId]
    for (const [id, m] of this.members) if (m.announcement.heartbeats !== undefined) ids.push(id)
    return ids
  }

  /** Peers this view holds any state for (members, statuses, watch and report records): bounded by who is there. */
  trackedPeers(): number {
    return new Set([
      ...this.members.keys(),
      ...this.statuses.keys(),
      ...this.watchedSince.keys(),
      ...this.reportedSuspect.keys(),
      ...this.weReportedSuspect
    ]).size
  }

  /** Recomputes whom we watch after the members changed: ring neighbours, and every member not on the ring. */
  private updateWatched(now: number): void {
    if (!this.ringChanged) return
    this.ringChanged = false
    const watched = ringNeighbours(this.selfPeerId, this.ring(), this.ringPerSide)
    for (const [id, m] of this.members) if (m.announcement.heartbeats === undefined) watched.add(id)
    for (const id of this.watchedSince.keys()) if (!watched.has(id)) this.watchedSince.delete(id)
    for (const id of watched) if (!this.watchedSince.has(id) && this.members.has(id)) this.watchedSince.set(id, now)
  }

  /** The members to beat (and to expect beats from), sorted. */
  watched(): string[] {
    return [...this.watchedSince.keys()].sort()
  }

  /**
   * This agent itself did not run for a while (SIGSTOP, a stalled event loop, a suspended machine): the
   * silence of the members it watches is its own, so their windows start again from now rather than being
   * judged and reported gone (they would be reported by an agent the others have already dropped).
   */
  afterStall(now: number): void {
    for (const id of this.watchedSince.keys()) this.watchedSince.set(id, now)
  }

  /** Reports about the members we watch since the last call, to send to every member. */
  takeReports(): LivenessReport[] {
    const reports = this.outbox
    this.outbox = []
    return reports
  }

  /** Applies an announcement that passed schema validation and was received from `from`. */
  onAnnouncement(a: Announcement, now: number): { verdict: AnnouncementVerdict; events: MembershipEvent[] } {
    if (a.cluster !== this.cluster) return { verdict: 'other-cluster', events: [] }
    if (a.peerId === this.selfPeerId) return { verdict: 'self', events: [] }
    const existing = this.members.get(a.peerId)
    if (existing !== undefined && !isNewer(a, existing.announcement)) {
      // the same one again (the slow refresh): a sign of life for members nobody reports on to us
      if (!isNewer(existing.announcement, a)) this.members.set(a.peerId, { ...existing, lastHeard: Math.max(existing.lastHeard, now) })
      return { verdict: 'stale', events: [] }
    }
    this.members.set(a.peerId, {
      announcement: a,
      lastHeard: now,
      connected: existing?.connected,
      disconnectedAt: existing?.disconnectedAt
    })
    this.reportedSuspect.delete(a.peerId)
    if (existing === undefined || (existing.announcement.heartbeats === undefined) !== (a.heartbeats === undefined)) this.ringChanged = true
    this.updateWatched(now)
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

  /**
   * A watcher's report about `report.subject`, from the signed sender `from`. Taken when the sender is one of
   * the subject's ring neighbours (one further each side, for views that differ by a join) and the report is
   * about the announcement we hold or a newer one; ignored for members we watch ourselves (our own evidence
   * stands). `refute`: the report is about us and says we are not alive (the caller announces again).
   */
  onReport(from: string, report: LivenessReport, now: number): { taken: boolean; refute: boolean; events: MembershipEvent[] } {
    const ignored = { taken: false, refute: false, events: [] }
    if (report.subject === this.selfPeerId) return { ...ignored, refute: report.state !== 'alive' }
    const member = this.members.get(report.subject)
    if (member === undefined || from === report.subject || this.watchedSince.has(report.subject)) return ignored
    if (member.announcement.heartbeats === undefined) return ignored
    if (!ringNeighbours(report.subject, this.ring(), this.ringPerSide + 1).has(from)) return ignored
    if (isNewer(member.announcement, report)) return ignored
    if (report.state === 'gone') {
      this.members.delete(report.subject)
      this.statuses.delete(report.subject)
      this.reportedSuspect.delete(report.subject)
      this.ringChanged = true
      this.updateWatched(now)
      return { taken: true, refute: false, events: [{ type: 'member:left', peerId: report.subject, reason: 'silent' }, ...this.tick(now)] }
    }
    if (report.state === 'suspect') this.reportedSuspect.set(report.subject, now)
    else this.reportedSuspect.delete(report.subject)
    return { taken: true, refute: false, events: this.evaluate(report.subject, now) }
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
    const id = member.announcement.peerId
    const watchedSince = this.watchedSince.get(id)
    const silence = now - Math.max(member.lastHeard, watchedSince ?? -Infinity)
    if (watchedSince !== undefined && silence >= this.timings.silenceGoneMs) return 'gone'
    if (watchedSince === undefined && now - member.lastHeard >= this.unwatchedGoneMs()) return 'gone'
    if (member.connected === false && member.disconnectedAt !== undefined) {
      return now - member.disconnectedAt >= this.timings.disconnectGoneMs ? 'gone' : 'suspect'
    }
    if (watchedSince !== undefined) return silence >= this.timings.silenceSuspectMs ? 'suspect' : 'alive'
    const reported = this.reportedSuspect.get(id)
    return reported !== undefined && now - reported < this.timings.silenceGoneMs ? 'suspect' : 'alive'
  }

  /** A member nobody watches for us is gone after two refreshes it did not send, and the silence bound. */
  private unwatchedGoneMs(): number {
    return 2 * (this.timings.announceRefreshMs ?? 300_000) + this.timings.silenceGoneMs
  }

  /** Re-evaluates every member; removes the gone ones. Returns the transitions. */
  tick(now: number): MembershipEvent[] {
    this.updateWatched(now)
    const events: MembershipEvent[] = []
    for (const peerId of [...this.members.keys()]) events.push(...this.evaluate(peerId, now))
    if (events.some((e) => e.type === 'member:left')) {
      // the ring closed over the gap: new neighbours are watched from now
      this.updateWatched(now)
      for (const peerId of [...this.members.keys()]) events.push(...this.evaluate(peerId, now))
    }
    return events
  }

  /** The transitions of one member at `now` (a heartbeat re-evaluates only its sender: 20,000 a second in the simulation). */
  private evaluate(peerId: string, now: number): MembershipEvent[] {
    const member = this.members.get(peerId)
    if (member === undefined) return []
    const status = this.statusAt(member, now)
    const before = this.statuses.get(peerId)
    // What we report: silence of a member we watch and that is on the ring (one that is not watches
    // everyone itself), while it is connected (everyone sees a closed connection for themselves; never
    // connected: we may not be able to reach it at all, which says nothing of it to others).
    const reportable = this.watchedSince.has(peerId) && member.announcement.heartbeats !== undefined && member.connected === true
    const report = (state: LivenessReport['state']): void => {
      this.outbox.push({ subject: peerId, incarnation: member.announcement.incarnation, seq: member.announcement.seq, state })
    }
    if (status === 'gone') {
      this.members.delete(peerId)
      this.statuses.delete(peerId)
      this.reportedSuspect.delete(peerId)
      this.watchedSince.delete(peerId)
      this.ringChanged = true
      const reason = member.connected === false ? 'disconnected' : 'silent'
      if (reportable && reason === 'silent') report('gone')
      this.weReportedSuspect.delete(peerId)
      return [{ type: 'member:left', peerId, reason }]
    }
    if (before === status) return []
    this.statuses.set(peerId, status)
    if (status === 'suspect' && reportable) {
      report('suspect')
      this.weReportedSuspect.add(peerId)
    }
    if (status === 'alive' && this.weReportedSuspect.delete(peerId)) report('alive')
    return before !== undefined || status === 'suspect' ? [{ type: status === 'alive' ? 'member:alive' : 'member:suspect', peerId }] : []
  }

  get(peerId: string): Member | undefined {
    return this.members.get(peerId)
  }

  /** Members with their status, sorted by peer id (stable output). */
  list(now: number): Array<Member & { status: MemberStatus }> {
    return [...this.members.values()]
      .map((m) => {
        const status = this.statusAt(m, now)
        // a member others watch for us is as recent as their word: no report against it
        const lastHeard = status === 'alive' && !this.watchedSince.has(m.announcement.peerId) ? now : m.lastHeard
        return { ...m, lastHeard, status }
      })
      .filter((m): m is Member & { status: MemberStatus } => m.status !== 'gone')
      .sort((a, b) => (a.announcement.peerId < b.announcement.peerId ? -1 : 1))
  }
}
