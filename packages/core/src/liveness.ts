/**
 * Who watches whom, and what a watcher tells the others. Pure.
 *
 * Heartbeats to every member cost every agent one exchange per member per period (at 20 agents, 8 kB/s and
 * 2.4 % of a core at rest, most of it TCP segments of a few bytes). Instead, the members that announce
 * `heartbeats.ring` sit on a ring ordered by peer id, and each beats only its `RING_PER_SIDE` neighbours on
 * either side (all others when there are at most 2 x RING_PER_SIDE of them, so small clusters are watched
 * exactly as before). A member silent towards its watchers is reported by them, once per change, on the
 * liveness topic: `suspect`, then `gone` or `alive` again; everyone else takes their word for it. A member
 * reported against its own latest announcement refutes by announcing again (a newer seq makes every report
 * about the older one stale), so one watcher that cannot hear it does not take it out of the cluster.
 *
 * What keeps the bounds: a killed agent closes its TCP connections, which every member sees directly; a
 * frozen one is reported `gone` by its watchers at `silenceGoneMs`, within a few milliseconds of gossip of
 * when each member would have seen the silence itself. Members that do not announce `heartbeats` (the
 * previous release) beat every member and expect a beat from every member: they are watched as before.
 */
import { z } from 'zod'
import { parseBoundedJson, type ParseResult } from './announcement.js'

/** Neighbours on each side of a member on the ring: each member is watched by twice this many. */
export const RING_PER_SIDE = 2

/** The members that `self` watches among `ids` (self may be among them): its ring neighbours. */
export function ringNeighbours(self: string, ids: Iterable<string>, perSide: number = RING_PER_SIDE): Set<string> {
  const ring = [...new Set([self, ...ids])].sort()
  if (ring.length <= 2 * perSide + 1) return new Set(ring.filter((id) => id !== self))
  const at = ring.indexOf(self)
  const neighbours = new Set<string>()
  for (let d = 1; d <= perSide; d++) {
    neighbours.add(ring[(at + d) % ring.length] as string)
    neighbours.add(ring[(at - d + ring.length) % ring.length] as string)
  }
  return neighbours
}

export const LIVENESS_STATES = ['suspect', 'alive', 'gone'] as const
export type LivenessState = (typeof LIVENESS_STATES)[number]

/** Largest liveness report accepted (one is ~150 bytes of JSON). */
export const MAX_LIVENESS_REPORT_BYTES = 1024

const counter = z
  .number()
  .int()
  .min(0)
  .max(2 ** 53 - 1)

export const livenessReportSchema = z
  .object({
    v: z.literal(1),
    /** The member watched; the reporter is the signed sender of the message. */
    subject: z.string().min(1).max(128),
    /** The subject's announcement the reporter held: a newer one from the subject refutes the report. */
    incarnation: counter,
    seq: counter,
    state: z.enum(LIVENESS_STATES)
  })
  .loose()

export interface LivenessReport {
  readonly subject: string
  readonly incarnation: number
  readonly seq: number
  readonly state: LivenessState
}

export function encodeLivenessReport(r: LivenessReport): Uint8Array {
  return new TextEncoder().encode(JSON.stringify({ v: 1, subject: r.subject, incarnation: r.incarnation, seq: r.seq, state: r.state }))
}

export function parseLivenessReport(raw: Uint8Array): ParseResult<LivenessReport> {
  const parsed = parseBoundedJson(raw, MAX_LIVENESS_REPORT_BYTES, 'a liveness report', livenessReportSchema)
  if (!parsed.ok) return parsed
  const { subject, incarnation, seq, state } = parsed.value
  return { ok: true, value: { subject, incarnation, seq, state } }
}
