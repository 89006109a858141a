import { readFileSync } from 'node:fs'

/** Waits for a condition with a deadline (end-to-end tests never sleep a fixed time). */
export async function waitFor<T>(
  what: string,
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  {
    timeoutMs = 15_000,
    intervalMs = 25,
    explain
  }: {
    timeoutMs?: number
    intervalMs?: number
    /** What the failure message should say about the state seen last (CI output is all we get there). */
    explain?: () => string
  } = {}
): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let lastError: unknown
  for (;;) {
    try {
      const value = await probe()
      if (value !== undefined && value !== false) return value
    } catch (err) {
      lastError = err
    }
    if (Date.now() > deadline) {
      let state = ''
      try {
        state = explain !== undefined ? `; seen last: ${explain()}` : ''
      } catch (err) {
        state = `; could not describe the state: ${String(err)}`
      }
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${lastError !== undefined ? ` (last error: ${String(lastError)})` : ''}${state}`
      )
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs))
  }
}

/** True while a process with this pid exists (and is not a zombie). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch {
    return false
  }
  try {
    // A zombie still answers kill(0); its state letter is Z.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z'
  } catch {
    return true
  }
}
