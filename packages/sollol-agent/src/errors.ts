/**
 * One place that turns errors into a one-line message and an exit code. User mistakes and missing
 * prerequisites get no stack trace; anything unexpected gets one at debug level.
 */
import { CommanderError } from 'commander'
import { GgufFormatError, TestModelOptionError } from '@sollol/gguf'
import {
  BinariesNotFoundError,
  BuildFailedError,
  MissingToolError,
  PortInUseError,
  ProcessStartError,
  RpcProbeError
} from '@sollol/llama-cpp'

/** Exit codes, documented in the README. */
export const ExitCode = {
  OK: 0,
  /** Something failed at run time (a process did not start, a probe failed, a build failed). */
  FAILURE: 1,
  /** The command line or an input file was wrong. */
  USAGE: 2,
  /** A prerequisite is missing: build tools or llama.cpp binaries. */
  MISSING_PREREQUISITE: 3,
  /** Stopped by Ctrl-C (SIGINT) or SIGTERM before it was done (the shell convention, 128 + 2). */
  INTERRUPTED: 130
} as const

export class InterruptedError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'InterruptedError'
  }
}

export class UsageError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'UsageError'
  }
}

export function exitCodeFor(err: unknown): number {
  if (err instanceof InterruptedError) return ExitCode.INTERRUPTED
  if (err instanceof Error && err.name === 'ClusterKeyError') return ExitCode.USAGE
  if (err instanceof UsageError || err instanceof GgufFormatError || err instanceof TestModelOptionError) return ExitCode.USAGE
  if (err instanceof CommanderError) return err.exitCode === 0 ? ExitCode.OK : ExitCode.USAGE
  if (err instanceof MissingToolError || err instanceof BinariesNotFoundError) return ExitCode.MISSING_PREREQUISITE
  return ExitCode.FAILURE
}

/** Errors whose message is the whole story for the user. */
export function isExpected(err: unknown): boolean {
  return (
    err instanceof UsageError ||
    err instanceof GgufFormatError ||
    err instanceof TestModelOptionError ||
    err instanceof MissingToolError ||
    err instanceof BinariesNotFoundError ||
    err instanceof BuildFailedError ||
    err instanceof PortInUseError ||
    err instanceof ProcessStartError ||
    err instanceof RpcProbeError ||
    (err instanceof Error && ['NoAgentError', 'PlanError', 'ClusterKeyError'].includes(err.name)) ||
    (err instanceof Error && 'code' in err && (err.code === 'ENOENT' || err.code === 'EACCES'))
  )
}
