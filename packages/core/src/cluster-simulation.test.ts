/**
 * Membership and election of a 200-node cluster in one process, in virtual time: the pure core as every
 * agent runs it (membership from announcements, the election rule, claims only from nodes that can
 * coordinate), with the LAN timings and a simulated network (every announcement and liveness report
 * reaches every running node 1-30 ms later, as gossip does; a killed node's connections close ~20 ms after it
 * dies). As the mesh does, a node announces when what it says changes (and on the slow refresh), and sends
 * each member it watches (its ring neighbours, liveness.ts) a heartbeat naming its last announcement each
 * interval; a heartbeat naming one the receiver lacks makes it fetch that announcement from its owner (a
 * round trip); what a watcher sees of a neighbour's silence it reports to all, and a node reported against
 * its latest announcement announces again. No I/O, no sleeps.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { Announcement } from './announcement.js'
import { clusterModel, Election, LAN_ELECTION_TIMINGS, rankCandidates, type Role } from './election.js'
import { Membership } from './membership.js'
import { RING_PER_SIDE, type LivenessReport } from './liveness.js'
import { LAN_MESH_TIMINGS } from './timings.js'
import { testAnnouncement } from './test-announcement.js'
import { seededRandom } from './random.js'

const N = 200
const HOLDERS = 20 // nodes that hold the model and can coordinate
const STEP_MS = 50
const LOOP_MS = 250 // the coordination loop's period

interface SimNode {
  readonly id: string
  readonly startAt: number
  running: boolean
  /** Frozen: runs nothing, its connections stay open (SIGSTOP). */
  frozen: boolean
  membership: Membership
  election: Election
  seq: number
  lastAnnounceAt: number
  latest: Announcement | undefined
  announced: string
  role: Role
  readonly holder: boolean
}

class Simulation {
  readonly nodes: SimNode[] = []
  now = 0
  delivered = 0
  heartbeats = 0
  fetched = 0
  reports = 0
  refutations = 0
  /** Messages in flight, by the step they arrive in. */
  private readonly queue = new Map<number, Array<{ at: number; to: SimNode; run: () => void }>>()
  private readonly rand: () => number
  /** Every (term, node) that acted as coordinator. */
  readonly coordinatorsByTerm = new Map<number, Set<string>>()
  readonly byId = new Map<string, SimNode>()

  constructor(seed: number, startWithinMs: number) {
    this.rand = seededRandom(seed) // deterministic, so a failure can be replayed
    for (let i = 0; i < N; i++) {
      const id = `node-${String(i).padStart(3, '0')}`
      const startAt = Math.floor(this.rand() * startWithinMs)
      this.nodes.push({
        id,
        startAt,
        running: false,
        frozen: false,
        membership: new Membership('default', id, LAN_MESH_TIMINGS),
        election: new Election(id, LAN_ELECTION_TIMINGS, startAt),
        seq: 0,
        lastAnnounceAt: -Infinity,
        latest: undefined,
        announced: '',
        role: 'observing',
        holder: i % (N / HOLDERS) === 0
      })
      this.byId.set(id, this.nodes[i]!)
    }
  }

  private announcement(n: SimNode): Announcement {
    const coordinator = n.election.coordinator
    return testAnnouncement(n.id, {
      incarnation: n.startAt + 1,
      seq: ++n.seq,
      heartbeats: { ring: RING_PER_SIDE },
      models: n.holder ? [{ name: 'm.gguf', size: 1e9, id: 'aaaaaaaaaaaaaaaa' }] : [],
      canCoordinate: n.holder,
      coordinator: coordinator === undefined ? null : { peerId: coordinator, term: n.election.currentTerm }
    })
  }

  private announce(n: SimNode): void {
    const a = this.announcement(n)
    n.latest = a
    n.lastAnnounceAt = this.now
    n.announced = JSON.stringify(a.coordinator)
    for (const to of this.nodes) {
      if (to === n || !to.running) continue
      this.send({ at: this.now + 1 + Math.floor(this.rand() * 30), to, run: () => this.receive(to, a) })
    }
  }

  private heartbeat(n: SimNode): void {
    const beat = n.latest
    if (beat === undefined) return
    for (const id of n.membership.watched()) {
      const to = this.byId.get(id)
      if (to === undefined || !to.running) continue
      this.send({
        at: this.now + 1 + Math.floor(this.rand() * 30),
        to,
        run: () => {
          this.heartbeats++
          if (!to.membership.onHeartbeat(n.id, beat, this.now).behind) return
          // the fetch: a round trip to the owner, which answers with what it holds then
          this.send({
            at: this.now + 2 + Math.floor(this.rand() * 60),
            to,
            run: () => {
              if (!n.running || n.latest === undefined) return
              this.fetched++
              this.receive(to, n.latest)
            }
          })
        }
      })
    }
  }

  /** Sends what `n`'s membership has to report to every running node. */
  private flushReports(n: SimNode): void {
    for (const report of n.membership.takeReports()) {
      for (const to of this.nodes) {
        if (to === n || !to.running) continue
        this.send({ at: this.now + 1 + Math.floor(this.rand() * 30), to, run: () => this.receiveReport(to, n.id, report) })
      }
    }
  }

  private receiveReport(n: SimNode, from: string, report: LivenessReport): void {
    this.reports++
    const { refute } = n.membership.onReport(from, report, this.now)
    if (refute && n.latest !== undefined && report.seq === n.latest.seq) {
      this.refutations++
      this.announce(n)
    }
    this.flushReports(n)
  }

  private send(m: { at: number; to: SimNode; run: () => void }): void {
    const step = Math.ceil(m.at / STEP_MS) * STEP_MS
    const bucket = this.queue.get(step) ?? []
    bucket.push(m)
    this.queue.set(step, bucket)
  }

  private receive(n: SimNode, a: Announcement): void {
    this.delivered++
    n.membership.onAnnouncement(a, this.now)
    // the mesh's connection to every member (a joining node's hello comes over it)
    if (n.membership.get(a.peerId)?.connected !== true) n.membership.onConnected(a.peerId, this.now)
    // as the coordinator does: a claim counts only from a node that can coordinate
    if (a.coordinator !== null && a.coordinator.peerId === a.peerId && !a.canCoordinate) return
    n.election.observe(a, this.now)
  }

  kill(n: SimNode): void {
    n.running = false
    for (const to of this.nodes) {
      if (to === n || !to.running) continue
      this.send({ at: this.now + 20, to, run: () => to.membership.onDisconnected(n.id, this.now) })
    }
  }

  /** One coordination step of a node, as coordinator.ts does it. */
  private decide(n: SimNode): void {
    n.membership.tick(this.now)
    this.flushReports(n)
    const members = n.membership.list(this.now)
    const self = this.announcement(n)
    n.seq-- // the self view is not an announcement
    const present = new Set([n.id, ...members.map((m) => m.announcement.peerId)])
    const live = [self, ...members.filter((m) => m.status === 'alive').map((m) => m.announcement)]
    const model = clusterModel(live)
    const candidates = model !== undefined ? rankCandidates(live, model.id).map((a) => a.peerId) : []
    const decision = n.election.decide(present, candidates, this.now)
    n.role = decision.role
    if (decision.role === 'coordinator') {
      const set = this.coordinatorsByTerm.get(n.election.currentTerm) ?? new Set<string>()
      set.add(n.id)
      this.coordinatorsByTerm.set(n.election.currentTerm, set)
    }
    const belief = JSON.stringify(self.coordinator)
    if (decision.claimTerm !== undefined || belief !== n.announced) this.announce(n)
  }

  runUntil(end: number): void {
    for (; this.now < end; this.now += STEP_MS) {
      for (const n of this.nodes) {
        if (!n.running && n.startAt <= this.now && n.seq === 0) {
          n.running = true
          this.announce(n) // the hello: peers learn of a newcomer at once
        }
      }
      const due = this.queue.get(this.now)
      if (due !== undefined) {
        this.queue.delete(this.now)
        due.sort((x, y) => x.at - y.at)
        for (const m of due) if (m.to.running && !m.to.frozen) m.run()
      }
      for (const n of this.nodes) {
        if (!n.running || n.frozen) continue
        if (this.now - n.lastAnnounceAt >= LAN_MESH_TIMINGS.announceRefreshMs) this.announce(n)
        if ((this.now - n.startAt) % LAN_MESH_TIMINGS.announceIntervalMs < STEP_MS) this.heartbeat(n)
        if (this.now % LOOP_MS === 0) this.decide(n)
      }
    }
  }

  running(): SimNode[] {
    return this.nodes.filter((n) => n.running && !n.frozen)
  }

  /** Every running node lists all other running nodes alive, and all agree on one coordinator and term. */
  agreement(): { coordinator: string; term: number } | undefined {
    const up = this.running()
    const first = up[0]
    if (first === undefined) return undefined
    const coordinator = first.election.coordinator
    const term = first.election.currentTerm
    if (coordinator === undefined) return undefined
    for (const n of up) {
      if (n.election.coordinator !== coordinator || n.election.currentTerm !== term) return undefined
      const alive = n.membership.list(this.now).filter((m) => m.status === 'alive').length
      if (alive !== up.length - 1) return undefined
    }
    return { coordinator, term }
  }
}

test(`a ${N}-node cluster started within 5 s converges on one coordinator; its loss elects the next within the bound`, () => {
  const wallStart = Date.now()
  const sim = new Simulation(20261129, 5000)
  // 1. start: everyone knows everyone, one coordinator, by 20 s of virtual time (the last start is at <= 5 s)
  let converged: number | undefined
  while (sim.now < 20_000 && converged === undefined) {
    sim.runUntil(sim.now + 500)
    if (sim.agreement() !== undefined && sim.running().length === N) converged = sim.now
  }
  assert.ok(converged !== undefined, 'converged within 20 s of virtual time')
  sim.runUntil(sim.now + 3000) // the settle period: the claimant starts to act
  const first = sim.agreement()
  assert.ok(first !== undefined)
  const acting = sim.running().filter((n) => n.role === 'coordinator')
  assert.deepEqual(
    acting.map((n) => n.id),
    [first.coordinator],
    'exactly one node acts as coordinator'
  )
  const holder = sim.nodes.find((n) => n.id === first.coordinator)!
  assert.ok(holder.holder, 'the coordinator holds the model')

  // 2. the coordinator dies: the next one is elected, with a higher term, within the 20 s failover bound
  sim.kill(holder)
  const killedAt = sim.now
  let failover: number | undefined
  while (sim.now < killedAt + 20_000 && failover === undefined) {
    sim.runUntil(sim.now + 250)
    const agreed = sim.agreement()
    if (agreed !== undefined && agreed.coordinator !== holder.id && sim.running().some((n) => n.role === 'coordinator')) failover = sim.now
  }
  assert.ok(failover !== undefined, 'a new coordinator within 20 s of virtual time')
  const second = sim.agreement()!
  assert.ok(second.term > first.term)
  assert.ok(sim.nodes.find((n) => n.id === second.coordinator)!.holder)

  // never two acting coordinators in one term
  for (const [term, ids] of sim.coordinatorsByTerm) assert.equal(ids.size, 1, `term ${term}: ${[...ids].join(', ')}`)
  const perNodePerSecond = sim.delivered / N / (sim.now / 1000)

  // 3. at rest for a minute and a half: heartbeats alone keep every member alive; announcements only on the refresh
  const rest = { at: sim.now, delivered: sim.delivered, heartbeats: sim.heartbeats }
  sim.runUntil(sim.now + 90_000)
  const up = sim.running().length
  const seconds = (sim.now - rest.at) / 1000
  const announcementsAtRest = (sim.delivered - rest.delivered) / up / seconds
  const heartbeatsAtRest = (sim.heartbeats - rest.heartbeats) / up / seconds
  assert.deepEqual(sim.agreement(), second, 'still one view and one coordinator after 90 s at rest')
  const refreshOnly = (up - 1) / (LAN_MESH_TIMINGS.announceRefreshMs / 1000)
  assert.ok(announcementsAtRest <= refreshOnly * 1.05, `announcements at rest: ${announcementsAtRest} per node per second`)
  // each node beats its four ring neighbours once per interval, not its 199 peers
  const ringBeats = (2 * RING_PER_SIDE) / (LAN_MESH_TIMINGS.announceIntervalMs / 1000)
  assert.ok(heartbeatsAtRest <= ringBeats * 1.05, `heartbeats at rest: ${heartbeatsAtRest} per node per second`)
  const refutationsAtRest = sim.refutations

  // 4. a node freezes (its connections stay open): its watchers report it, and it leaves every view within
  // the 10 s bound; a killed one leaves within the 5 s bound (every node sees its connections close)
  const frozen = sim.running().find((n) => !n.holder)!
  frozen.frozen = true
  const frozenAt = sim.now
  let frozenGone: number | undefined
  while (sim.now < frozenAt + 10_000 && frozenGone === undefined) {
    sim.runUntil(sim.now + 50)
    if (sim.running().every((n) => n.membership.get(frozen.id) === undefined)) frozenGone = sim.now - frozenAt
  }
  assert.ok(frozenGone !== undefined && frozenGone <= 10_000, `a frozen node leaves every view within 10 s (${frozenGone} ms)`)
  // its last beats went up to an interval before it froze
  assert.ok(frozenGone >= LAN_MESH_TIMINGS.silenceGoneMs - LAN_MESH_TIMINGS.announceIntervalMs, 'not before its watchers could know')
  const killed = sim.running().find((n) => !n.holder)!
  sim.kill(killed)
  const killedAt2 = sim.now
  let killedGone: number | undefined
  while (sim.now < killedAt2 + 5000 && killedGone === undefined) {
    sim.runUntil(sim.now + 50)
    if (sim.running().every((n) => n.membership.get(killed.id) === undefined)) killedGone = sim.now - killedAt2
  }
  assert.ok(killedGone !== undefined, 'a killed node leaves every view within 5 s')
  sim.runUntil(sim.now + 10_000)
  assert.deepEqual(sim.agreement(), second, 'the others still agree, each alive in every view')
  assert.equal(refutationsAtRest, sim.refutations, 'no node was reported at rest or by the freeze of another')
  console.log(
    `simulation: ${N} nodes (${HOLDERS} holders) converged ${converged} ms after the first start (virtual); ` +
      `coordinator loss -> agreed on the next in ${failover - killedAt} ms; ${perNodePerSecond.toFixed(0)} announcements received per node per second until then ` +
      `(${sim.fetched} fetched after a heartbeat named a newer one); at rest ${announcementsAtRest.toFixed(2)} announcements and ${heartbeatsAtRest.toFixed(0)} heartbeats per node per second; ` +
      `a frozen node left every view after ${frozenGone} ms, a killed one after ${killedGone} ms (${sim.reports} reports delivered); ` +
      `${Date.now() - wallStart} ms of real time`
  )
})
