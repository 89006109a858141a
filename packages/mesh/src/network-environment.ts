/**
 * What the host's network allows, checked up front so that discovery never fails silently:
 * mDNS sends to 224.0.0.251 via the default interface, and with no route for it the mDNS library
 * swallows ENETUNREACH and simply finds nobody.
 */
import { readFileSync } from 'node:fs'
import { networkInterfaces } from 'node:os'

export interface LanAddress {
  readonly interface: string
  readonly address: string
}

/** Non-internal IPv4 addresses, in interface order. */
export function lanAddresses(): LanAddress[] {
  const result: LanAddress[] = []
  for (const [name, entries] of Object.entries(networkInterfaces())) {
    for (const entry of entries ?? []) {
      if (entry.family === 'IPv4' && !entry.internal) result.push({ interface: name, address: entry.address })
    }
  }
  return result
}

/**
 * Whether the kernel can route to 224.0.0.251: a default route or one covering 224.0.0.0/4 in
 * /proc/net/route (hex, little-endian). Pure over the file's text.
 */
export function hasMulticastRoute(procNetRoute: string): boolean {
  const lines = procNetRoute.trim().split('\n').slice(1)
  const target = 0xe00000fb // 224.0.0.251
  for (const line of lines) {
    const fields = line.trim().split(/\s+/)
    if (fields.length < 8) continue
    const destination = leToNumber(fields[1] ?? '')
    const mask = leToNumber(fields[7] ?? '')
    if ((target & mask) >>> 0 === destination) return true
  }
  return false
}

function leToNumber(hex: string): number {
  const n = parseInt(hex, 16)
  return (((n & 0xff) << 24) | (((n >>> 8) & 0xff) << 16) | (((n >>> 16) & 0xff) << 8) | ((n >>> 24) & 0xff)) >>> 0
}

export type MdnsAvailability = { ok: true } | { ok: false; reason: string }

export function mdnsAvailability(): MdnsAvailability {
  if (lanAddresses().length === 0) return { ok: false, reason: 'no non-loopback IPv4 address: this host is not on a LAN' }
  if (process.platform !== 'linux') return { ok: true }
  let routes: string
  try {
    routes = readFileSync('/proc/net/route', 'utf8')
  } catch {
    return { ok: true }
  }
  if (!hasMulticastRoute(routes))
    return {
      ok: false,
      reason:
        'no route to 224.0.0.0/4 (no default route and no multicast route): mDNS cannot send; add one (ip route add 224.0.0.0/4 dev <lan-interface>) or use --bootstrap'
    }
  return { ok: true }
}
