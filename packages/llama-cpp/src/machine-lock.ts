/**
 * One holder at a time per machine: a lock file created exclusively, holding the holder's pid. Agents that
 * share a machine (test hosts, or two agents on one box) measure their rpc-servers one after another:
 * measured together on two cores each saw part of a core and was priced 2-3x slower than it ran. A lock
 * whose holder is gone (its pid no longer runs: a killed agent) is taken over.
 */
import { mkdir, open, readFile, rm } from 'node:fs/promises'
import { dirname } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'

export interface MachineLockOptions {
  /** How long to wait for the lock before going ahead without it (a measurement is not worth a hang). */
  readonly waitMs: number
  readonly pollMs?: number
  readonly signal?: AbortSignal
  /** Told each time the lock was found taken (tests). */
  readonly onBusy?: () => void
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

async function tryTake(path: string): Promise<boolean> {
  try {
    const file = await open(path, 'wx')
    await file.writeFile(String(process.pid))
    await file.close()
    return true
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    const holder = Number((await readFile(path, 'utf8').catch(() => '')).trim())
    // an empty file is a holder between its create and its write: wait for it
    if (Number.isInteger(holder) && holder > 0 && !alive(holder)) await rm(path, { force: true })
    return false
  }
}

/** Runs `work` holding the lock at `path` (or without it after `waitMs`); the lock goes when it ends. */
export async function withMachineLock<T>(path: string, o: MachineLockOptions, work: () => Promise<T>): Promise<T> {
  await mkdir(dirname(path), { recursive: true })
  const deadline = Date.now() + o.waitMs
  let held = false
  while (!(held = await tryTake(path)) && Date.now() < deadline && o.signal?.aborted !== true) {
    o.onBusy?.()
    await sleep(o.pollMs ?? 250, undefined, o.signal !== undefined ? { signal: o.signal } : {}).catch(() => {})
  }
  try {
    return await work()
  } finally {
    if (held) await rm(path, { force: true })
  }
}
