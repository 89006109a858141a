/** The agent's libp2p key, kept in its data dir so the peer id survives restarts. */
import { mkdir, readFile, writeFile, chmod } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'

export const IDENTITY_FILE = 'identity.key'

export async function loadOrCreateIdentity(dataDir: string): Promise<{ key: PrivateKey; created: boolean }> {
  const file = join(dataDir, IDENTITY_FILE)
  try {
    return { key: privateKeyFromProtobuf(await readFile(file)), created: false }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new Error(
        `Expected ${file} to hold this agent's libp2p key, got an unreadable file (${(err as Error).message}); move it away to start with a new identity`
      )
    }
  }
  await mkdir(dataDir, { recursive: true, mode: 0o700 })
  const key = await generateKeyPair('Ed25519')
  await writeFile(file, privateKeyToProtobuf(key), { mode: 0o600, flag: 'wx' }).catch(async (err: NodeJS.ErrnoException) => {
    // Another process created it first: use theirs, so both agree on one identity.
    if (err.code === 'EEXIST') return
    throw err
  })
  await chmod(file, 0o600)
  return { key: privateKeyFromProtobuf(await readFile(file)), created: true }
}

export const INCARNATION_FILE = 'incarnation'

/**
 * Pure: the next incarnation. Peers order a restarted agent's announcements by it, so it must grow across
 * restarts even when the clock went back (NTP, a wrong RTC at boot): one above the last one, or the clock
 * when that is larger (it stays comparable with agents that used the clock alone).
 */
export const nextIncarnation = (previous: number | undefined, now: number): number => Math.max((previous ?? 0) + 1, Math.floor(now))

/** Reads the last incarnation from the data dir, writes and returns the next one. */
export async function nextPersistedIncarnation(dataDir: string, now = Date.now()): Promise<number> {
  const file = join(dataDir, INCARNATION_FILE)
  let previous: number | undefined
  try {
    const value = Number((await readFile(file, 'utf8')).trim())
    if (Number.isSafeInteger(value) && value >= 0) previous = value
  } catch {}
  const next = nextIncarnation(previous, now)
  await writeFile(file, `${next}\n`)
  return next
}
