// What the probes share: an idle agent on a test host, its speed given (no calibration beside a
// measurement), its output appended to agent-<i>.log in `dir`.
import { createWriteStream } from 'node:fs'
import { join } from 'node:path'
import { CLI } from '../bench/lib.mjs'

export function startIdleAgent(network, dir, i, { level = 'warn', nodeFlags = [] } = {}) {
  const host = network.hosts[i]
  const args = [CLI, 'start', '--data-dir', join(dir, `data-${i + 1}`), '--no-setup', '--api-host', host.address]
  args.push('--rpc-threads', '1', '--max-memory', '64MiB', '--rpc-speed', '0.5', '--log-level', level)
  const child = host.run(process.execPath, [...nodeFlags, ...args], { buffer: false, stdin: 'ignore' })
  const log = createWriteStream(join(dir, `agent-${i + 1}.log`), { flags: 'a' })
  child.stdout?.pipe(log)
  child.stderr?.pipe(log)
  child.catch(() => {}) // stopped by the probe; its exit is in its log
  return child
}

/** Node flags from the environment variable `name` (space-separated). */
export const nodeFlagsFrom = (name) => (process.env[name] ?? '').split(' ').filter(Boolean)
