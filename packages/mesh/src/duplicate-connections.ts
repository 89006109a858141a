/**
 * One connection per pair of agents. Two agents that learn of each other at once both dial, and libp2p
 * keeps both connections (its dialer only reuses a connection that is already open). Each surplus
 * connection costs pings, gossip streams and file descriptors for ever.
 *
 * The rule: only the dialler of a connection closes it, so the two ends can never close different
 * connections and leave none. The lower peer id's dial is the one kept: the higher side closes its own
 * dials once one from the lower side is open, and either side keeps only its oldest dial.
 */
export interface OpenConnection {
  readonly direction: 'inbound' | 'outbound'
  /** When it opened (ms); only the order matters. */
  readonly openedAt: number
}

/** The connections to `peerId` that this agent (`selfId`) should close. */
export function surplusConnections<C extends OpenConnection>(selfId: string, peerId: string, open: readonly C[]): C[] {
  if (open.length < 2) return []
  const outbound = open.filter((c) => c.direction === 'outbound').sort((a, b) => a.openedAt - b.openedAt)
  const hasInbound = open.some((c) => c.direction === 'inbound')
  const selfIsLower = selfId < peerId
  if (!selfIsLower && hasInbound) return outbound
  return outbound.slice(1)
}
