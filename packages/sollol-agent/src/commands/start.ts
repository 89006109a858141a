import { availableParallelism } from 'node:os'
import type { Command } from 'commander'
import { formatRpcVersion, probeRpcServer, RpcServerSupervisor, type Logger } from '@sollol/llama-cpp'
import { integer } from '../options.js'
import { addBinaryOptions, binariesFromFlags, type BinaryFlags } from './setup.js'

interface StartFlags extends BinaryFlags {
  setup: boolean
  rpcHost: string
  rpcPort: number
  rpcThreads: number
  rpcDevice?: string
  rpcCache: boolean
}

/**
 * Resolves on the first SIGINT or SIGTERM; a second one exits at once. The handlers stay installed:
 * execa's exit hook re-raises a signal when it sees no other listener, which would kill us mid-stop.
 */
function untilStopSignal(log: Logger): Promise<string> {
  return new Promise((resolve) => {
    let received = false
    const onSignal = (signal: string): void => {
      if (received) {
        log.warn({ signal }, 'second signal: exiting without a clean stop')
        process.exit(130)
      }
      received = true
      resolve(signal)
    }
    process.on('SIGINT', onSignal)
    process.on('SIGTERM', onSignal)
  })
}

export function registerStart(program: Command, getLog: () => Logger): void {
  addBinaryOptions(program.command('start', { isDefault: true }))
    .description('run the agent on this machine: its rpc-server, supervised (the default command)')
    .option('--no-setup', 'fail instead of building llama.cpp when no binaries are found')
    .option('--rpc-host <ipv4>', 'address the rpc-server binds to', '127.0.0.1')
    .option('--rpc-port <port>', 'port of the rpc-server', integer('--rpc-port', 1, 65535), 50052)
    .option(
      '--rpc-threads <n>',
      'CPU threads of the rpc-server (default: all cores)',
      integer('--rpc-threads', 1, 1024),
      availableParallelism()
    )
    .option('--rpc-device <list>', 'devices the rpc-server serves, e.g. CUDA0,CPU (default: all)')
    .option('--no-rpc-cache', 'do not keep pushed tensors in a local cache')
    .action(async (flags: StartFlags) => {
      const log = getLog()
      const binaries = await binariesFromFlags(flags, log, flags.setup)
      log.info({ rpcServer: binaries.rpcServer, version: binaries.version, source: binaries.source }, 'llama.cpp binaries')
      const rpc = new RpcServerSupervisor({
        binary: binaries.rpcServer,
        host: flags.rpcHost,
        port: flags.rpcPort,
        threads: flags.rpcThreads,
        cache: flags.rpcCache,
        ...(flags.rpcDevice !== undefined ? { devices: flags.rpcDevice.split(',').map((d) => d.trim()) } : {}),
        logger: log
      })
      const stopSignal = untilStopSignal(log)
      rpc.on('state', (state) => {
        if (state.kind === 'restarting') log.warn({ restarts: state.restarts, inMs: state.restartInMs }, 'rpc-server crashed; restarting')
      })
      await rpc.start()
      const probe = await probeRpcServer(rpc.endpoint.split(':')[0] ?? '127.0.0.1', rpc.port)
      log.info(
        { endpoint: rpc.endpoint, protocol: formatRpcVersion(probe.version), devices: probe.devices },
        'agent running; Ctrl-C stops it'
      )
      const signal = await stopSignal
      log.info({ signal }, 'stopping')
      await rpc.stop()
    })
}
