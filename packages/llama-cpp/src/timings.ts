/**
 * Timing presets for the supervisors. Production code uses LAN_TIMINGS; tests pass FAST_TEST_TIMINGS
 * (or their own) instead of patching constants.
 */
export interface SupervisorTimings {
  /** How long a started process may take to accept connections (rpc-server) or answer a completion (llama-server). */
  readonly readyTimeoutMs: number
  /** Interval between readiness checks while starting. */
  readonly readyPollMs: number
  /** SIGTERM to SIGKILL. */
  readonly stopGraceMs: number
  /** First delay before restarting a crashed process; doubles per crash in a row up to `restartMaxMs`. */
  readonly restartInitialMs: number
  readonly restartMaxMs: number
  /** A process that ran this long without crashing resets the backoff. */
  readonly stableAfterMs: number
  /** Timeout of one liveness request to llama-server (a real 1-token completion). */
  readonly livenessTimeoutMs: number
}

export const LAN_TIMINGS: SupervisorTimings = {
  // Model loading over the network can take minutes for large models; readiness waits on progress, this is the cap.
  readyTimeoutMs: 30 * 60_000,
  readyPollMs: 200,
  stopGraceMs: 5000,
  restartInitialMs: 500,
  restartMaxMs: 30_000,
  stableAfterMs: 60_000,
  // A busy server finishes its current request first; 1 token should still come within this on any LAN.
  livenessTimeoutMs: 15_000
}

export const FAST_TEST_TIMINGS: SupervisorTimings = {
  readyTimeoutMs: 30_000,
  readyPollMs: 25,
  stopGraceMs: 2000,
  restartInitialMs: 50,
  restartMaxMs: 400,
  stableAfterMs: 2000,
  livenessTimeoutMs: 5000
}

/** Delay before restart number `consecutiveCrashes` (1 = first crash). Pure. */
export function restartDelayMs(consecutiveCrashes: number, timings: Pick<SupervisorTimings, 'restartInitialMs' | 'restartMaxMs'>): number {
  const exponent = Math.max(0, consecutiveCrashes - 1)
  return Math.min(timings.restartMaxMs, timings.restartInitialMs * 2 ** Math.min(exponent, 30))
}
