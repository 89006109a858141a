import type { Command } from 'commander'
import { formatRpcVersion, probeRpcServer } from '@sollol/llama-cpp'
import { endpoint, formatBytes, integer } from '../options.js'

export function registerProbe(program: Command): void {
  program
    .command('probe')
    .description('read the RPC protocol version and devices of an idle rpc-server (harmless to a busy one)')
    .argument('<host:port>', 'the rpc-server endpoint', endpoint('<host:port>'))
    .option('--timeout <ms>', 'give up after this long', integer('--timeout', 100, 600_000), 3000)
    .option('--json', 'print JSON')
    .action(async (target: { host: string; port: number }, o: { timeout: number; json?: boolean }) => {
      const result = await probeRpcServer(target.host, target.port, { timeoutMs: o.timeout })
      if (o.json === true) {
        process.stdout.write(JSON.stringify({ ...result, version: formatRpcVersion(result.version) }, null, 2) + '\n')
        return
      }
      process.stdout.write(
        `${result.endpoint}: RPC protocol ${formatRpcVersion(result.version)}${result.legacy ? ' (older than 6: not usable with this build)' : ''}\n`
      )
      for (const d of result.devices) process.stdout.write(`  device ${d.index}: ${formatBytes(d.free)} free of ${formatBytes(d.total)}\n`)
    })
}
