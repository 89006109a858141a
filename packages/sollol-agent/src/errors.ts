/**
 * One place that turns errors into a one-line message and an exit code. User mistakes and missing
 * prerequisites get no stack trace; anything unexpected gets one at debug level.
 */
import { CommanderError } from 'commander'
import { ExitCode, SollolError } from '@sollol/core'

/** Exit codes, documented in the README (defined with the errors' base class in @sollol/core). */
export { ExitCode }

export class InterruptedError extends SollolError {
  constructor(message: string) {
    super(message, ExitCode.INTERRUPTED)
  }
}

export class UsageError extends SollolError {
  constructor(message: string) {
    super(message, ExitCode.USAGE)
  }
}

export function exitCodeFor(err: unknown): number {
  if (err instanceof SollolError) return err.exitCode
  if (err instanceof CommanderError) return err.exitCode === 0 ? ExitCode.OK : ExitCode.USAGE
  return ExitCode.FAILURE
}

/** Errors whose message is the whole story for the user. */
export function isExpected(err: unknown): boolean {
  return (
    (err instanceof SollolError && err.expected) ||
    (err instanceof Error && 'code' in err && (err.code === 'ENOENT' || err.code === 'EACCES'))
  )
}
