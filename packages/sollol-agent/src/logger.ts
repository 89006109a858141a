/**
 * Structured logs: JSON lines when stderr is not a terminal (for journald, files, log shippers),
 * readable colour lines on a terminal. Logs go to stderr so stdout carries only command output.
 */
import { destination, pino, type Logger as PinoLogger } from 'pino'
import pretty from 'pino-pretty'

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const
export type LogLevel = (typeof LOG_LEVELS)[number]

export function createLogger(level: LogLevel, pretty_ = process.stderr.isTTY): PinoLogger {
  if (pretty_) {
    return pino({ level }, pretty({ destination: 2, colorize: true, translateTime: 'HH:MM:ss', ignore: 'pid,hostname', sync: true }))
  }
  return pino({ level, base: { pid: process.pid } }, destination({ dest: 2, sync: true }))
}
