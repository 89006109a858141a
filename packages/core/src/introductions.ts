/**
 * Introductions: on a new connection each side asks the other which members it knows, and where they
 * announced they listen. Pure (the codec and the choice of whom to dial); the mesh moves the bytes.
 *
 * Why: announcements travel on change only (and on a slow refresh, 5 minutes on a LAN), relayed by
 * gossipsub, which drops what a relay receives before its mesh has grafted the next peer. A newcomer that
 * joined through one peer (`--bootstrap`, or no multicast) could then know only that peer; if it left, the
 * rest were cut apart until the next refresh, or for good. An introduction is a peer's word, not the
 * introduced member's: it is dialled once, with the member's peer id (Noise proves who answers), and only
 * what the member then says itself (its hello) is kept and redialled. That is no more trust than mDNS,
 * whose unauthenticated answers every agent dials already. A peer that lies (or reconnects to lie again)
 * is bounded by `IntroducedDials`: at most MAX_INTRODUCTIONS dials per window, each peer id once in it.
 */
import { z } from 'zod'
import { parseBoundedJson, type ParseResult } from './announcement.js'

/** Members named in one answer: a LAN cluster (the connection limit). */
export const MAX_INTRODUCTIONS = 256
/** Addresses kept per introduced member (an announcement has at most 32; the first are the ones it prefers). */
export const MAX_INTRODUCED_ADDRESSES = 8
/** The largest answer read: every member at its longest, with room for JSON. */
export const MAX_INTRODUCTIONS_BYTES = 1024 * 1024

export interface Introduction {
  readonly peerId: string
  readonly addresses: readonly string[]
}

const introductionsSchema = z
  .object({
    v: z.literal(1),
    members: z
      .array(
        z.object({ peerId: z.string().min(1).max(128), addresses: z.array(z.string().max(256)).max(MAX_INTRODUCED_ADDRESSES) }).loose()
      )
      .max(MAX_INTRODUCTIONS)
  })
  .loose()

export function encodeIntroductions(members: readonly Introduction[]): Uint8Array {
  const kept = members
    .slice(0, MAX_INTRODUCTIONS)
    .map((m) => ({ peerId: m.peerId, addresses: m.addresses.slice(0, MAX_INTRODUCED_ADDRESSES) }))
  return new TextEncoder().encode(JSON.stringify({ v: 1, members: kept }))
}

export function parseIntroductions(raw: Uint8Array): ParseResult<Introduction[]> {
  const parsed = parseBoundedJson(raw, MAX_INTRODUCTIONS_BYTES, 'introductions', introductionsSchema)
  if (!parsed.ok) return parsed
  return { ok: true, value: parsed.value.members.map(({ peerId, addresses }) => ({ peerId, addresses })) }
}

/**
 * The introduced members worth a dial: not ourselves, not already connected, not already known (a member,
 * or a peer whose own word we hold: those are redialled anyway), each once, with some address.
 */
export function strangersToDial(
  introduced: readonly Introduction[],
  self: string,
  alreadyKnown: (peerId: string) => boolean
): Introduction[] {
  const seen = new Set<string>()
  return introduced.filter((m) => {
    if (m.peerId === self || seen.has(m.peerId) || m.addresses.length === 0 || alreadyKnown(m.peerId)) return false
    seen.add(m.peerId)
    return true
  })
}

/**
 * How many introduced members are dialled: each peer id once per window, at most `limit` in a window, so a
 * peer naming invented members (again on every reconnect) cannot make this agent dial without end. A LAN
 * newcomer needs one dial per member it was not connected to yet: far below the limit.
 */
export class IntroducedDials {
  private readonly dialledAt = new Map<string, number>()

  constructor(
    private readonly windowMs: number,
    private readonly limit: number = MAX_INTRODUCTIONS
  ) {}

  /** Whether `peerId` may be dialled now (and if so, counts it). */
  take(peerId: string, now: number): boolean {
    for (const [id, at] of this.dialledAt) if (now - at >= this.windowMs) this.dialledAt.delete(id)
    if (this.dialledAt.has(peerId) || this.dialledAt.size >= this.limit) return false
    this.dialledAt.set(peerId, now)
    return true
  }
}
