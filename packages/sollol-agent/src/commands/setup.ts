import type { Command } from 'commander'
import { GPU_BACKENDS, listRpcServerDevices, resolveBinaries, type GpuBackend, type LlamaBinaries, type Logger } from '@sollol/llama-cpp'
import { oneOf } from '../options.js'
import { buildProgressReporter } from '../progress-display.js'

export interface BinaryFlags {
  llamaBinDir?: string
  rpcServerBin?: string
  llamaServerBin?: string
  backend?: GpuBackend
  native?: boolean
}

/** Flags shared by every command that needs the llama.cpp binaries. */
export function addBinaryOptions(command: Command): Command {
  return command
    .option('--llama-bin-dir <dir>', 'folder with ggml-rpc-server (or rpc-server) and llama-server')
    .option('--rpc-server-bin <file>', 'path of the rpc-server binary')
    .option('--llama-server-bin <file>', 'path of the llama-server binary')
    .option(
      '--backend <name>',
      `build for this backend when building: ${GPU_BACKENDS.join(', ')} (default: cpu)`,
      oneOf('--backend', GPU_BACKENDS)
    )
    .option('--no-native', 'build portable binaries instead of ones tuned to this CPU')
}

export async function binariesFromFlags(flags: BinaryFlags, log: Logger, allowBuild: boolean): Promise<LlamaBinaries> {
  const progress = buildProgressReporter(log)
  try {
    return await resolveBinaries({
      ...(flags.llamaBinDir !== undefined ? { binDir: flags.llamaBinDir } : {}),
      ...(flags.rpcServerBin !== undefined ? { rpcServer: flags.rpcServerBin } : {}),
      ...(flags.llamaServerBin !== undefined ? { llamaServer: flags.llamaServerBin } : {}),
      ...(flags.backend !== undefined || flags.native === false
        ? { build: { backend: flags.backend ?? 'cpu', native: flags.native !== false } }
        : {}),
      allowBuild,
      logger: log,
      onProgress: progress.update
    })
  } finally {
    progress.done()
  }
}

export function registerSetup(program: Command, getLog: () => Logger): void {
  addBinaryOptions(program.command('setup'))
    .description('find or build llama.cpp (ggml-rpc-server, llama-server and the model tools) and print their paths and version')
    .option('--json', 'print JSON')
    .action(async (flags: BinaryFlags & { json?: boolean }) => {
      const binaries = await binariesFromFlags(flags, getLog(), true)
      // what the rpc-server can serve here (GGML_VK_VISIBLE_DEVICES etc. apply as they will to the agent)
      const devices = binaries.devices ?? (await listRpcServerDevices(binaries.rpcServer).catch(() => []))
      if (flags.json === true) {
        process.stdout.write(JSON.stringify({ ...binaries, devices }, null, 2) + '\n')
      } else {
        process.stdout.write(
          `rpc-server:   ${binaries.rpcServer}\nllama-server: ${binaries.llamaServer}\nversion:      ${binaries.version}\nfound in:     ${binaries.source}\n` +
            (binaries.tools !== undefined ? `quantize:     ${binaries.tools.quantize}\ngguf-split:   ${binaries.tools.ggufSplit}\n` : '') +
            (binaries.backends !== undefined ? `backends:     ${binaries.backends.join(', ')} (prebuilt, loadable)\n` : '') +
            `devices:      ${devices.map((d) => `${d.name} (${d.description}, ${Math.round(d.memoryTotal / 2 ** 20)} MiB)`).join(', ') || 'none listed'}\n`
        )
      }
    })
}
