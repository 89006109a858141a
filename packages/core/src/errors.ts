/**
 * The one base class of the errors a user can meet: each kind carries its exit code and whether its
 * message is the whole story (no stack trace), so the CLI maps any error without a list of class names.
 */

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

export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode]

export class SollolError extends Error {
  constructor(
    message: string,
    /** What the process exits with when this error ends a command. */
    readonly exitCode: ExitCodeValue = ExitCode.FAILURE,
    /** True when the message is the whole story for the user (no stack trace). */
    readonly expected = true
  ) {
    super(message)
    this.name = new.target.name
  }
}
