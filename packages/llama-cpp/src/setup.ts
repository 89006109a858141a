/**
 * Zero-config resolution of the llama.cpp binaries: explicit paths, then PATH, then the per-user cache,
 * then (unless told not to) a build from source into that cache.
 */
import {
  binariesInCache,
  binariesOnPath,
  BinariesNotFoundError,
  defaultCacheRoot,
  explicitBinaries,
  type ExplicitBinaries,
  type LlamaBinaries
} from './binaries.js'
import { join } from 'node:path'
import {
  buildLlamaCpp,
  cacheEntryDir,
  DEFAULT_BUILD,
  NODE_LLAMA_CPP_VERSION,
  PrebuiltUnavailableError,
  SOURCE_BUILD,
  type BuildOptions
} from './build.js'
import { existsSync } from 'node:fs'
import { mkdir, rename } from 'node:fs/promises'
import { listRpcServerDevices } from './devices.js'
import {
  detectGpuModules,
  installedModules,
  installModules,
  moduleFileName,
  OPTIONAL_MODULES_DIR,
  type GpuModule,
  prebuiltPlatform
} from './prebuilt-backends.js'
import type { BuildProgress } from './build-progress.js'
import type { Logger } from './log.js'

export interface ResolveOptions extends ExplicitBinaries {
  /** Skip PATH (for example to force the cached build). */
  readonly ignorePath?: boolean
  readonly cacheRoot?: string
  readonly build?: BuildOptions
  /** false: never build; fail with the steps to take instead. */
  readonly allowBuild?: boolean
  readonly logger?: Logger
  readonly onProgress?: (progress: BuildProgress) => void
}

export async function resolveBinaries(options: ResolveOptions = {}): Promise<LlamaBinaries> {
  const explicit = await explicitBinaries(options)
  if (explicit !== undefined) return explicit
  const build = options.build ?? DEFAULT_BUILD
  // A GPU build asked for by name is only found in the cache: PATH binaries may be CPU-only.
  if (options.ignorePath !== true && options.build === undefined) {
    const onPath = await binariesOnPath()
    if (onPath !== undefined) return onPath
  }
  const cacheRoot = options.cacheRoot ?? defaultCacheRoot()
  const cached = binariesInCache(cacheEntryDir(cacheRoot, build))
  if (cached !== undefined) return options.allowBuild === false ? cached : await withGpuModules(cached, cacheRoot, options.logger)
  if (options.allowBuild === false) {
    // a machine where the prebuilt backends could not be fetched has the full source build
    const source = options.build === undefined ? binariesInCache(cacheEntryDir(cacheRoot, SOURCE_BUILD)) : undefined
    if (source !== undefined) return source
    throw new BinariesNotFoundError(
      'No llama.cpp binaries found (flags, PATH, cache): run `sollol-agent setup` to build them, or pass --llama-bin-dir'
    )
  }
  const run = (b: BuildOptions): Promise<LlamaBinaries> =>
    buildLlamaCpp({
      build: b,
      cacheRoot,
      ...(options.logger !== undefined ? { logger: options.logger } : {}),
      ...(options.onProgress !== undefined ? { onProgress: options.onProgress } : {})
    })
  try {
    return await withGpuModules(await run(build), cacheRoot, options.logger)
  } catch (err) {
    if (!(err instanceof PrebuiltUnavailableError)) throw err
    options.logger?.warn({ reason: err.message }, 'building every backend from source instead (slower)')
    return await run(SOURCE_BUILD)
  }
}

/**
 * Adds the prebuilt GPU backends this machine can load (Vulkan, CUDA) to a loadable build's folder, once:
 * a machine that gets a GPU driver later gets its module at the next setup. A failed fetch leaves the
 * CPU: it is said, not fatal.
 *
 * A module is kept where it finds a device. ggml loads every module beside the binary into every
 * rpc-server and llama-server, and the Vulkan one loads the Vulkan loader and every installed driver (Mesa's
 * software one with LLVM among them): measured, an rpc-server's resident memory went from 5.5 MB to 72 MB
 * (280 MB of address space) on a machine with no Vulkan GPU. So a module that lists no device is moved to
 * `optional/` (kept for `GGML_VK_VISIBLE_DEVICES` use with a software device, as the tests do) and
 * tried again at the next setup.
 */
async function withGpuModules(binaries: LlamaBinaries, cacheRoot: string, logger: Logger | undefined): Promise<LlamaBinaries> {
  // best effort: two agents starting together may move the same file; the CPU serves whatever happens here
  return await arrangeGpuModules(binaries, cacheRoot, logger).catch(async (err: Error) => {
    logger?.warn({ err: err.message }, 'could not arrange the GPU backends; the CPU serves meanwhile')
    return binaries.modulesDir !== undefined ? { ...binaries, backends: await installedModules(binaries.modulesDir) } : binaries
  })
}

async function arrangeGpuModules(binaries: LlamaBinaries, cacheRoot: string, logger: Logger | undefined): Promise<LlamaBinaries> {
  const dir = binaries.modulesDir
  const platform = prebuiltPlatform()
  if (dir === undefined || platform === undefined) return binaries
  const wanted = await detectGpuModules()
  for (const note of wanted.notes) logger?.warn({}, note)
  const optional = join(dir, OPTIONAL_MODULES_DIR)
  // a module set aside earlier comes back for the check: a GPU may have been installed since
  for (const module of wanted.modules) {
    const file = moduleFileName(module)
    if (existsSync(join(optional, file)) && !existsSync(join(dir, file))) await rename(join(optional, file), join(dir, file))
  }
  const present = await installedModules(dir)
  const missing = wanted.modules.filter((m) => !present.includes(m))
  if (missing.length > 0) {
    await installModules(dir, platform, missing, NODE_LLAMA_CPP_VERSION, join(cacheRoot, 'work'), logger).catch((err: Error) => {
      logger?.warn({ modules: missing, err: err.message }, 'could not fetch the prebuilt GPU backends; the CPU serves meanwhile')
    })
  }
  const listed = await listRpcServerDevices(binaries.rpcServer).catch(() => undefined)
  const devices = listed ?? []
  for (const module of (await installedModules(dir)).filter((m): m is GpuModule => m !== 'cpu')) {
    if (devices.some((d) => d.backend === module)) continue
    await mkdir(optional, { recursive: true })
    await rename(join(dir, moduleFileName(module)), join(optional, moduleFileName(module)))
    logger?.info({ module }, `no ${module} device here: its backend is set aside (${OPTIONAL_MODULES_DIR}/), so servers do not load it`)
  }
  // a module set aside listed no device, so the list stands for what is left
  return { ...binaries, backends: await installedModules(dir), ...(listed !== undefined ? { devices: listed } : {}) }
}
