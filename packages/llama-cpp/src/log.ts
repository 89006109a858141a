/**
 * The logger the components take: the subset of pino's API they use, so the CLI passes a pino
 * child logger and tests pass `silentLogger` or a recorder.
 */
export interface LogFn {
  (fields: Record<string, unknown>, message: string): void
  (message: string): void
}

export interface Logger {
  readonly debug: LogFn
  readonly info: LogFn
  readonly warn: LogFn
  readonly error: LogFn
  child: (bindings: Record<string, unknown>) => Logger
}

const noop: LogFn = () => {}

export const silentLogger: Logger = {
  debug: noop,
  info: noop,
  warn: noop,
  error: noop,
  child: () => silentLogger
}
