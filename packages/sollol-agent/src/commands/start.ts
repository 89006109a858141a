import { availableParallelism } from 'node:os'
import { readFile } from 'node:fs/promises'
import { resolve } from 'node:path'
import type { Command } from 'commander'
import { KV_CACHE_TYPES, parseClusterName, type ClusterName, type KvCacheType } from '@sollol/core'
import type { Logger } from '@sollol/llama-cpp'
import { clusterKeyFingerprint, readClusterKey } from '@sollol/mesh'
import { Agent, RPC_ACCESS_MODES, type RpcAccessMode } from '../agent.js'
import { defaultDataDir } from '../config.js'
import {
  byteSize,
  memoryLimits,
  type MemoryLimits,
  endpoint,
  integer,
  ipv4,
  multiaddrOption,
  oneOf,
  parseRpcBackends,
  positiveNumber,
  cluster as clusterOption
} from '../options.js'
import { addBinaryOptions, binariesFromFlags, type BinaryFlags } from './setup.js'
import { ExitCode } from '../errors.js'

export const DEFAULT_P2P_PORT = 7490
export const DEFAULT_API_PORT = 7491
export const DEFAULT_RPC_PORT = 50052
export const DEFAULT_SERVER_PORT = 7492

interface StartFlags extends BinaryFlags {
  setup: boolean
  cluster: ClusterName
  dataDir: string
  p2pPort: number
  p2pHost: string
  apiHost: string
  apiPort: number
  rpcHost?: string
  rpcPort: number
  rpcThreads: number
  rpcDevice?: string
  rpcCache: boolean
  rpcBackend?: Array<{ host: string; port: number }>
  rpcBackendsFile?: string
  rpcCacheMax?: number
  rpcOpen: boolean
  rpcAccess: RpcAccessMode
  rpcEndpoint?: { host: string; port: number }
  maxMemory?: MemoryLimits
  model?: string
  bootstrap: string[]
  mdns: boolean
  clusterKey?: string
  serverPort: number
  apiToken?: string
  ctxSize?: number
  cacheTypeK: KvCacheType
  cacheTypeV: KvCacheType
  recalibrate: boolean
  rpcSpeed?: number
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

/**
 * The last line of defence. Input from the network is handled where it arrives (a bad message is dropped,
 * a bad connection closed); an exception that still escapes to the event loop means the agent's state can
 * no longer be trusted, so it logs why in one line and exits 1: the service manager restarts it (the
 * systemd unit has Restart=on-failure) and its children die with it. A rejected promise nobody awaited is
 * a bug but leaves no half-done work behind: it is logged and the agent keeps serving.
 */
function guardProcess(log: Logger): void {
  process.on('uncaughtException', (err) => {
    log.error({ err: err.message, stack: err.stack?.split('\n').slice(1, 4).join(' | ') }, `agent died: ${err.name}: ${err.message}`)
    process.exit(ExitCode.FAILURE)
  })
  process.on('unhandledRejection', (reason) => {
    const message = reason instanceof Error ? `${reason.name}: ${reason.message}` : String(reason)
    log.warn({ reason: message }, 'ignored a rejected promise that nothing awaited')
  })
}

/** Options shared by `start` and `status` (which needs to know the cluster and the local API port). */
export function addClusterOptions(command: Command): Command {
  return command
    .option(
      '--cluster <name>',
      'cluster name: agents of other clusters are never listed or connected',
      clusterOption,
      parseClusterName('default')
    )
    .option('--api-port <port>', 'port of the local HTTP API', integer('--api-port', 1, 65535), DEFAULT_API_PORT)
    .option('--cluster-key <file>', 'make the cluster private: only agents with this key (from `sollol-agent keygen`) can connect')
}

export function registerStart(program: Command, getLog: () => Logger): void {
  addClusterOptions(addBinaryOptions(program.command('start', { isDefault: true })))
    .description('run the agent on this machine (the default command)')
    .option('--model <file>', "a GGUF model this machine holds (makes it able to coordinate), or ollama:NAME[:TAG] from Ollama's store")
    .option('--data-dir <dir>', 'where the agent keeps its identity', defaultDataDir())
    .option('--p2p-port <port>', 'TCP port of the mesh (libp2p)', integer('--p2p-port', 0, 65535), DEFAULT_P2P_PORT)
    .option(
      '--p2p-host <ipv4>',
      'address the mesh listens on (127.0.0.1 keeps a cluster on this machine, as the demo does)',
      ipv4('--p2p-host'),
      '0.0.0.0'
    )
    .option('--api-host <ipv4>', 'address of the local HTTP API (keep it on loopback unless you know why)', ipv4('--api-host'), '127.0.0.1')
    .option(
      '--rpc-host <ipv4>',
      "this host's LAN address, announced (and bound with --rpc-open); default: the first LAN address",
      ipv4('--rpc-host')
    )
    .option('--rpc-port <port>', 'port of the rpc-server', integer('--rpc-port', 1, 65535), DEFAULT_RPC_PORT)
    .option(
      '--rpc-threads <n>',
      'CPU threads of the rpc-server (default: all cores)',
      integer('--rpc-threads', 1, 1024),
      availableParallelism()
    )
    .option('--rpc-device <list>', 'devices the rpc-server serves, e.g. CUDA0,CPU (default: all)')
    .option('--no-rpc-cache', 'do not keep pushed tensors in a local cache')
    .option(
      '--rpc-cache-max <size>',
      "cap of the rpc-server's tensor cache, least recently used out first (default: half the free disk space, at most 64GiB)",
      byteSize('--rpc-cache-max')
    )
    .option(
      '--rpc-access <mode>',
      "who may use the rpc-server: gated (only the current coordinator's address), tunnel (only through the encrypted mesh), open (anyone on the LAN: trusted networks only)",
      oneOf('--rpc-access', RPC_ACCESS_MODES),
      'gated'
    )
    .option('--rpc-open', 'the same as --rpc-access open', false)
    .option('--rpc-endpoint <host:port>', 'use an rpc-server you run yourself instead of starting one', endpoint('--rpc-endpoint'))
    .option(
      '--rpc-backend <host:port...>',
      'a bare rpc-server (no agent) to plan with; this agent probes, measures and announces it (repeatable; unprotected: no gate)',
      (value: string, previous: Array<{ host: string; port: number }> = []) => [...previous, endpoint('--rpc-backend')(value)]
    )
    .option(
      '--rpc-backends-file <file>',
      "bare rpc-servers from a file: SOLLOL's rpc_backends.conf (host:port per line) or SynapticLlamas JSON"
    )
    .option(
      '--max-memory <size>',
      'memory this node offers the cluster, e.g. 8GiB (its CPU; default: 75% of what is free), or per device: CUDA0=14GiB,CPU=8GiB (a GPU default: its free memory less 5%)',
      memoryLimits('--max-memory')
    )
    .option(
      '--bootstrap <multiaddr...>',
      'peers to join directly where multicast is blocked, e.g. /ip4/10.0.0.5/tcp/7490',
      multiaddrOption('--bootstrap'),
      []
    )
    .option('--no-mdns', 'do not discover peers by mDNS (use --bootstrap)')
    .option(
      '--server-port <port>',
      'port of llama-server (the OpenAI API) when this agent coordinates',
      integer('--server-port', 1, 65535),
      DEFAULT_SERVER_PORT
    )
    .option(
      '--ctx-size <tokens>',
      "context size llama-server runs with (default: the model's, at most 4096)",
      integer('--ctx-size', 16, 10_000_000)
    )
    .option(
      '--cache-type-k <type>',
      `KV cache type of keys: ${KV_CACHE_TYPES.join(', ')} (planned accordingly)`,
      oneOf('--cache-type-k', KV_CACHE_TYPES),
      'f16'
    )
    .option(
      '--cache-type-v <type>',
      `KV cache type of values: ${KV_CACHE_TYPES.join(', ')} (a quantized one turns flash attention on, as llama.cpp requires)`,
      oneOf('--cache-type-v', KV_CACHE_TYPES),
      'f16'
    )
    .option(
      '--api-token <token>',
      'require this bearer token on the OpenAI API this agent serves when it coordinates (use the same on every model holder)'
    )
    .option('--recalibrate', 'measure the rpc-server speed again instead of using the cached result', false)
    .option(
      '--rpc-speed <seconds-per-GiB>',
      'use this rpc-server speed instead of measuring it (seconds to compute over 1 GiB of layers; lower is faster): steers the planner, or skips a measurement a busy start would spoil',
      positiveNumber('--rpc-speed')
    )
    .option('--no-setup', 'fail instead of building llama.cpp when no binaries are found')
    .action(async (flags: StartFlags) => {
      const log = getLog()
      // Read the key first: a bad key is a usage error before anything starts.
      const clusterKey = flags.clusterKey !== undefined ? await readClusterKey(resolve(flags.clusterKey)) : undefined
      if (clusterKey === undefined) {
        log.warn(
          {},
          'the cluster is OPEN: any machine on this LAN can join it and see its state; make a key with `sollol-agent keygen --out cluster.key` and start every agent with --cluster-key cluster.key'
        )
      } else {
        log.info(
          { keyFingerprint: clusterKeyFingerprint(clusterKey) },
          'the cluster is closed: only agents with the cluster key can connect (mDNS announcements stay visible on the LAN)'
        )
      }
      if (flags.model !== undefined && flags.apiToken === undefined) {
        log.warn(
          { port: flags.serverPort },
          'the OpenAI API this agent serves when it coordinates has NO token: anyone on the LAN can use it; set --api-token'
        )
      }
      // read before anything starts: a bad line is a usage error
      const rpcBackends = [
        ...(flags.rpcBackend ?? []),
        ...(flags.rpcBackendsFile !== undefined
          ? parseRpcBackends(await readFile(resolve(flags.rpcBackendsFile), 'utf8'), flags.rpcBackendsFile)
          : [])
      ]
      const binaries = await binariesFromFlags(flags, log, flags.setup)
      log.info({ rpcServer: binaries.rpcServer, version: binaries.version, source: binaries.source }, 'llama.cpp binaries')
      const agent = new Agent({
        cluster: flags.cluster,
        dataDir: resolve(flags.dataDir),
        p2pPort: flags.p2pPort,
        p2pHost: flags.p2pHost,
        apiHost: flags.apiHost,
        apiPort: flags.apiPort,
        ...(flags.rpcHost !== undefined ? { rpcHost: flags.rpcHost } : {}),
        rpcPort: flags.rpcPort,
        rpcThreads: flags.rpcThreads,
        ...(flags.rpcDevice !== undefined ? { rpcDevices: flags.rpcDevice.split(',').map((d) => d.trim()) } : {}),
        rpcCache: flags.rpcCache,
        ...(flags.rpcCacheMax !== undefined ? { rpcCacheMax: flags.rpcCacheMax } : {}),
        rpcAccess: flags.rpcOpen ? 'open' : flags.rpcAccess,
        ...(flags.rpcEndpoint !== undefined ? { rpcEndpoint: flags.rpcEndpoint } : {}),
        ...(rpcBackends.length > 0 ? { rpcBackends } : {}),
        ...(flags.maxMemory?.node !== undefined ? { maxMemory: flags.maxMemory.node } : {}),
        ...(flags.maxMemory !== undefined ? { maxDeviceMemory: flags.maxMemory.devices } : {}),
        ...(flags.model !== undefined ? { model: flags.model.startsWith('ollama:') ? flags.model : resolve(flags.model) } : {}),
        bootstrap: flags.bootstrap,
        mdns: flags.mdns,
        ...(clusterKey !== undefined ? { clusterKey } : {}),
        serverPort: flags.serverPort,
        ...(flags.apiToken !== undefined ? { apiToken: flags.apiToken } : {}),
        ...(flags.ctxSize !== undefined ? { contextSize: flags.ctxSize } : {}),
        ...(flags.cacheTypeK !== 'f16' || flags.cacheTypeV !== 'f16' ? { cacheTypes: { k: flags.cacheTypeK, v: flags.cacheTypeV } } : {}),
        recalibrate: flags.recalibrate,
        ...(flags.rpcSpeed !== undefined ? { rpcSpeed: flags.rpcSpeed } : {}),
        binaries,
        logger: log
      })
      guardProcess(log)
      const stopSignal = untilStopSignal(log)
      try {
        await agent.start()
        const signal = await stopSignal
        log.info({ signal }, 'stopping')
      } finally {
        await agent.stop()
      }
    })
}
