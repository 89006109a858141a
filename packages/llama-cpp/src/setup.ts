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
import { buildLlamaCpp, cacheEntryDir, DEFAULT_BUILD, type BuildOptions } from './build.js'
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
  if (cached !== undefined) return cached
  if (options.allowBuild === false) {
    throw new BinariesNotFoundError(
      'No llama.cpp binaries found (flags, PATH, cache): run `sollol-agent setup` to build them, or pass --llama-bin-dir'
    )
  }
  return await buildLlamaCpp({
    build,
    cacheRoot,
    ...(options.logger !== undefined ? { logger: options.logger } : {}),
    ...(options.onProgress !== undefined ? { onProgress: options.onProgress } : {})
  })
}
