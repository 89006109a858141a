/**
 * Cluster keys: a libp2p private-network pre-shared key (go-ipfs swarm key format). With one, every
 * connection is encrypted with the key before anything else happens, so an agent without it, or with
 * another, gets no connection at all. mDNS announcements are not covered: they stay visible on the LAN.
 */
import { createHash, randomBytes } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { ExitCode, SollolError } from '@sollol/core'

/** A go-ipfs style swarm key file; the group is the 32 key bytes in hex. */
export const SWARM_KEY_FORMAT = /^\/key\/swarm\/psk\/1\.0\.0\/\r?\n\/base16\/\r?\n([0-9a-fA-F]{64})\s*$/

export class ClusterKeyError extends SollolError {
  constructor(message: string) {
    super(message, ExitCode.USAGE)
  }
}

/** A new key, as the text of a key file. */
export function generateClusterKey(): string {
  return `/key/swarm/psk/1.0.0/\n/base16/\n${randomBytes(32).toString('hex')}`
}

/** Checks a key file's text; returns the bytes libp2p's pnet takes. */
export function parseClusterKey(text: string, source: string): Uint8Array {
  const match = SWARM_KEY_FORMAT.exec(text)
  if (match === null) {
    throw new ClusterKeyError(
      `Expected ${source} to be a cluster key (made by \`sollol-agent keygen\`: /key/swarm/psk/1.0.0/, /base16/, 64 hex digits), got something else`
    )
  }
  return new TextEncoder().encode(`/key/swarm/psk/1.0.0/\n/base16/\n${(match[1] ?? '').toLowerCase()}\n`)
}

export async function readClusterKey(path: string): Promise<Uint8Array> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    throw new ClusterKeyError(
      `Expected a readable cluster key at ${path}, got ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`
    )
  }
  return parseClusterKey(text, path)
}

/** A short, non-secret fingerprint: keeps keyed clusters apart in mDNS service names. */
export function clusterKeyFingerprint(key: Uint8Array): string {
  return createHash('sha256').update(key).digest('hex').slice(0, 8)
}
