/**
 * Progress of a CMake build read from its output. Pure: the caller feeds lines and the clock.
 * Ninja prints `[done/total]`, the Makefile generator `[ 42%]`; both count toward the targets asked
 * for, which is the whole build we run.
 */
export interface BuildProgress {
  /** 0..1 */
  readonly fraction: number
  /** Seconds left at the rate so far, once there is enough to estimate from. */
  readonly etaSeconds: number | undefined
}

const NINJA = /^\[(\d+)\/(\d+)\]/
const MAKE = /^\[\s*(\d+)%\]/

/** The fraction a build output line reports, or undefined for lines without progress. */
export function parseProgressLine(line: string): number | undefined {
  const ninja = NINJA.exec(line)
  if (ninja !== null) {
    const total = Number(ninja[2])
    return total > 0 ? Number(ninja[1]) / total : undefined
  }
  const make = MAKE.exec(line)
  if (make !== null) return Number(make[1]) / 100
  return undefined
}

/**
 * Tracks progress over a build. The Makefile generator restarts its percentage per target, so the
 * fraction only ever grows: a smaller value than seen before is ignored.
 */
export class BuildProgressTracker {
  private fraction = 0
  private readonly startedAt: number

  constructor(now: number) {
    this.startedAt = now
  }

  /** Feeds one output line; returns the new progress when the line moved it forward. */
  update(line: string, now: number): BuildProgress | undefined {
    const value = parseProgressLine(line)
    if (value === undefined || value <= this.fraction) return undefined
    this.fraction = Math.min(1, value)
    return this.current(now)
  }

  current(now: number): BuildProgress {
    const elapsed = (now - this.startedAt) / 1000
    // Below 5 % the rate says little (configure and the first objects are not representative).
    const etaSeconds = this.fraction >= 0.05 && elapsed > 0 ? Math.round((elapsed / this.fraction) * (1 - this.fraction)) : undefined
    return { fraction: this.fraction, etaSeconds }
  }
}

export function formatDuration(seconds: number): string {
  if (seconds < 60) return `${Math.round(seconds)}s`
  const minutes = Math.floor(seconds / 60)
  return `${minutes}m${String(Math.round(seconds % 60)).padStart(2, '0')}s`
}
