/**
 * @sollol/llama-cpp: everything that touches llama.cpp processes. Finds or builds the binaries,
 * supervises `ggml-rpc-server` and `llama-server`, and probes rpc-servers over the ggml RPC protocol.
 *
 * @example
 * ```ts
 * import { resolveBinaries, RpcServerSupervisor, LlamaServerSupervisor, probeRpcServer } from '@sollol/llama-cpp'
 * const bins = await resolveBinaries()                       // PATH, cache, or a build from source
 * const rpc = new RpcServerSupervisor({ binary: bins.rpcServer, port: 50052 })
 * await rpc.start()
 * const { version, devices } = await probeRpcServer('127.0.0.1', 50052)
 * const server = new LlamaServerSupervisor({ binary: bins.llamaServer, model: 'm.gguf', rpc: [rpc.endpoint], port: 8080 })
 * await server.start()                                         // resolves after a real completion
 * ```
 */
export * from './binaries.js'
export * from './build.js'
export * from './build-progress.js'
export * from './calibrate.js'
export { findOnPath, isProcessFrozen, OutputRing, spawnChild, stopChild, wrappedCommand, type Child } from './child.js'
// The layer rule is pure and shared with the planner: it lives in @sollol/core.
export { expectedLayerDevices, layersPerDevice, tensorSplitForLayerCounts, type LayerDevice } from '@sollol/core'
export * from './llama-server.js'
export * from './llama-server-log.js'
export type { Logger, LogFn } from './log.js'
export { silentLogger } from './log.js'
export { canConnect, freePort, isPortInUse } from './net-util.js'
export * from './prebuilt-backends.js'
export * from './devices.js'
export * from './rpc-probe.js'
export * from './rpc-protocol.js'
export * from './rpc-server.js'
export * from './setup.js'
export * from './timings.js'
export * from './rpc-cache.js'
export * from './rpc-load-meter.js'
