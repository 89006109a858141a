/**
 * One holder at a time per machine, through a lock file (created exclusively, holding the holder's pid).
 * Calibrations take it: agents started together on one machine (tests, the bench, the demo, a GPU box that
 * runs an agent per card) measured each other's contention instead of their device, and under a cold start
 * of 20 on two cores some measurements failed outright and were repeated at every later start. A lock left
 * by a process that died is taken over; a live holder is waited for up to a bound, after which the work is
 * done anyway (a slow measurement beats none), without touching the holder's file.
 */
import { link, readFile, rm, writeFile } from 'node:fs/promises'

export interface MachineLockOptions {
  /** Longest wait for another holder. */
  readonly maxWaitMs: number
  /** Time between looks at the lock while another holds it. */
  readonly pollMs?: number
  readonly now?: () => number
  readonly wait?: (ms: number) => Promise<void>
  /** Whether a process is running (stale locks are those of dead processes). */
  readonly isAlive?: (pid: number) => boolean
}

export interface MachineLock {
  /** False when the wait ran out and the caller goes ahead without the lock. */
  readonly held: boolean
  /** Who held it when the wait began (undefined: nobody). */
  readonly waitedFor: number | undefined
  readonly waitedMs: number
  release(): Promise<void>
}

const processAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    // EPERM: it exists, owned by someone else
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

async function holderOf(path: string): Promise<number | undefined> {
  try {
    const pid = Number((await readFile(path, 'utf8')).trim())
    return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined
  } catch {
    return undefined
  }
}

/** Takes the lock at `path` (waiting for a live holder up to `maxWaitMs`). */
export async function acquireMachineLock(path: string, o: MachineLockOptions): Promise<MachineLock> {
  const now = o.now ?? Date.now
  const wait = o.wait ?? (async (ms: number) => await new Promise<void>((resolve) => setTimeout(resolve, ms)))
  const isAlive = o.isAlive ?? processAlive
  const started = now()
  let waitedFor: number | undefined
  // the lock appears whole or not at all: a file with our pid, linked into place (link fails if one exists)
  const mine = `${path}.${process.pid}.${Math.random().toString(36).slice(2)}`
  await writeFile(mine, `${process.pid}\n`)
  try {
    return await take()
  } finally {
    await rm(mine, { force: true })
  }

  async function take(): Promise<MachineLock> {
    for (;;) {
      try {
        await link(mine, path)
        return {
          held: true,
          waitedFor,
          waitedMs: now() - started,
          release: async () => {
            await rm(path, { force: true })
          }
        }
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      }
      const holder = await holderOf(path)
      // A holder that died (undefined: released meanwhile, look again). Two waiters that find it dead in the
      // same instant may both remove it and both measure: what happened before this lock, rarely.
      if (holder !== undefined && !isAlive(holder)) {
        await rm(path, { force: true })
        continue
      }
      waitedFor ??= holder
      if (now() - started >= o.maxWaitMs) return { held: false, waitedFor, waitedMs: now() - started, release: async () => {} }
      await wait(o.pollMs ?? 250)
    }
  }
}
