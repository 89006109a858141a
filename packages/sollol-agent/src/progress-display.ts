/**
 * Shows a long build: a live bar with percent and ETA on a terminal; elsewhere a log line every 10 %
 * (journald and CI logs do not want carriage returns).
 */
import { formatDuration, type BuildProgress } from '@sollol/llama-cpp'
import type { Logger } from '@sollol/llama-cpp'

export function buildProgressReporter(
  log: Logger,
  stream: NodeJS.WriteStream = process.stderr
): { update: (p: BuildProgress) => void; done: () => void } {
  let lastLoggedDecile = -1
  let drawn = false
  return {
    update(p: BuildProgress) {
      const percent = Math.floor(p.fraction * 100)
      const eta = p.etaSeconds !== undefined ? ` ETA ${formatDuration(p.etaSeconds)}` : ''
      if (stream.isTTY) {
        const width = 30
        const filled = Math.round(p.fraction * width)
        stream.write(`\rbuilding llama.cpp [${'#'.repeat(filled)}${' '.repeat(width - filled)}] ${String(percent).padStart(3)}%${eta}   `)
        drawn = true
      } else if (Math.floor(percent / 10) > lastLoggedDecile) {
        lastLoggedDecile = Math.floor(percent / 10)
        log.info({ percent, etaSeconds: p.etaSeconds }, `building llama.cpp: ${percent}%${eta}`)
      }
    },
    done() {
      if (drawn) stream.write('\n')
    }
  }
}
