/**
 * Builds llama.cpp's `ggml-rpc-server` and `llama-server` from source, with no network but the npm
 * registry: the source is the llama.cpp release that the npm package node-llama-cpp ships as a git
 * bundle. The result is cached per user by source version and build options, and never rebuilt.
 */
import { createHash } from 'node:crypto'
import { cp, mkdir, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'
import { findOnPath } from './child.js'
import { binariesInCache, LLAMA_TOOL_NAMES, readLlamaVersion, type BuildManifest, type LlamaBinaries } from './binaries.js'
import { BuildProgressTracker, type BuildProgress } from './build-progress.js'
import { silentLogger, type Logger } from './log.js'
import { installModules, prebuiltPlatform } from './prebuilt-backends.js'
import { ExitCode, SollolError } from '@sollol/core'

/** Pinned: the llama.cpp source inside it is what every agent of a cluster should run (tag v0.4.0). */
export const NODE_LLAMA_CPP_VERSION = '3.21.1'

export const GPU_BACKENDS = ['cpu', 'cuda', 'hip', 'vulkan', 'metal'] as const
export type GpuBackend = (typeof GPU_BACKENDS)[number]

export interface BuildOptions {
  readonly backend: GpuBackend
  /** Compile for this machine's CPU only (faster code; the binaries may not run on older CPUs). */
  readonly native: boolean
  /**
   * Build the servers with loadable backends (`GGML_BACKEND_DL`) and take ggml's CPU and GPU backends from
   * node-llama-cpp's prebuilt packages (prebuilt-backends.ts) instead of compiling them. CPU builds only.
   */
  readonly loadable?: boolean
}

/** Loadable prebuilt backends where node-llama-cpp ships them for this platform, else a native source build. */
export const DEFAULT_BUILD: BuildOptions = { backend: 'cpu', native: true, loadable: prebuiltPlatform() !== undefined }

/** The full source build the default falls back to when the prebuilt backends cannot be fetched. */
export const SOURCE_BUILD: BuildOptions = { backend: 'cpu', native: true }

const isLoadable = (build: BuildOptions): boolean => build.loadable === true && build.backend === 'cpu'

/** CMake switches for a build. Pure. */
export function cmakeOptions(build: BuildOptions): string[] {
  const options = [
    '-DCMAKE_BUILD_TYPE=Release',
    '-DGGML_RPC=ON',
    // No tests, examples, TLS or prebuilt web UI: less to build and nothing to download.
    '-DLLAMA_BUILD_TESTS=OFF',
    '-DLLAMA_BUILD_EXAMPLES=OFF',
    '-DLLAMA_OPENSSL=OFF',
    '-DLLAMA_USE_PREBUILT_UI=OFF',
    // $ORIGIN-relative library paths, so the binaries keep working once copied into the cache.
    '-DCMAKE_BUILD_RPATH_USE_ORIGIN=ON',
    // loadable backends: ggml's registry loads them from the binaries' folder; the CPU ones come from npm
    ...(isLoadable(build)
      ? ['-DGGML_NATIVE=OFF', '-DGGML_BACKEND_DL=ON', '-DGGML_CPU=OFF']
      : [`-DGGML_NATIVE=${build.native ? 'ON' : 'OFF'}`])
  ]
  if (build.backend === 'cuda') options.push('-DGGML_CUDA=ON')
  if (build.backend === 'hip') options.push('-DGGML_HIP=ON')
  if (build.backend === 'vulkan') options.push('-DGGML_VULKAN=ON')
  if (build.backend === 'metal') options.push('-DGGML_METAL=ON')
  return options
}

/** What is compiled: the two servers, and the model tools tests and users quantize and split files with. */
export const BUILD_TARGETS = ['ggml-rpc-server', 'llama-server', LLAMA_TOOL_NAMES.quantize, LLAMA_TOOL_NAMES.ggufSplit] as const

/** The targets of a build: a loadable build also compiles the RPC backend module (nothing links it). Pure. */
export function buildTargets(build: BuildOptions): string[] {
  return isLoadable(build) ? [...BUILD_TARGETS, 'ggml-rpc'] : [...BUILD_TARGETS]
}

/** Cache entry name: source, backend and a hash of every option, so another option never reuses a build. Pure. */
export function cacheKey(build: BuildOptions, sourceVersion = NODE_LLAMA_CPP_VERSION): string {
  // the targets are part of the key: an entry built without the model tools is not reused as one with them
  const hash = createHash('sha256')
    .update(JSON.stringify({ sourceVersion, options: cmakeOptions(build), targets: buildTargets(build) }))
    .digest('hex')
    .slice(0, 10)
  return `node-llama-cpp-${sourceVersion}-${build.backend}-${hash}`
}

export function cacheEntryDir(cacheRoot: string, build: BuildOptions): string {
  return join(cacheRoot, 'llama.cpp', cacheKey(build))
}

/** The prebuilt backends could not be had (no package for this platform, no registry): build from source instead. */
export class PrebuiltUnavailableError extends SollolError {
  constructor(detail: string) {
    super(`prebuilt ggml backends unavailable: ${detail}`, ExitCode.FAILURE)
  }
}

export class MissingToolError extends SollolError {
  constructor(readonly tool: string) {
    super(
      `Cannot build llama.cpp: \`${tool}\` is missing. Install the build tools (Debian/Ubuntu: apt-get install cmake g++ git; ` +
        'Fedora: dnf install cmake gcc-c++ git; macOS: xcode-select --install && brew install cmake), ' +
        'or point --llama-bin-dir at an existing llama.cpp build',
      ExitCode.MISSING_PREREQUISITE
    )
  }
}

export class BuildFailedError extends SollolError {
  constructor(
    step: string,
    readonly output: readonly string[]
  ) {
    super(
      `llama.cpp build failed at ${step}: ${output
        .filter((l) => l.trim() !== '')
        .slice(-3)
        .join(' | ')}`,
      ExitCode.FAILURE
    )
  }
}

/** The tools a build needs, checked up front so a missing one is one clear line, not a CMake trace. */
export function checkBuildTools(pathVariable = process.env.PATH): void {
  for (const tool of ['cmake', 'git', 'tar', 'npm']) {
    if (findOnPath(tool, pathVariable) === undefined) throw new MissingToolError(tool)
  }
  if (!['c++', 'g++', 'clang++'].some((c) => findOnPath(c, pathVariable) !== undefined)) throw new MissingToolError('c++ (a C++ compiler)')
}

export interface BuildRunOptions {
  readonly build: BuildOptions
  readonly cacheRoot: string
  readonly logger?: Logger
  readonly onProgress?: (progress: BuildProgress) => void
  readonly jobs?: number
}

async function run(step: string, file: string, args: string[], cwd: string, onLine?: (line: string) => void): Promise<void> {
  const tail: string[] = []
  const child = execa(file, args, { cwd, reject: false, all: true, buffer: false, stdin: 'ignore' })
  child.all?.setEncoding('utf8')
  let partial = ''
  child.all?.on('data', (chunk: string) => {
    const lines = (partial + chunk).split('\n')
    partial = lines.pop() ?? ''
    for (const line of lines) {
      tail.push(line)
      if (tail.length > 40) tail.shift()
      onLine?.(line)
    }
  })
  const result = await child
  if (partial !== '') tail.push(partial)
  if (result.exitCode !== 0) throw new BuildFailedError(step, tail)
}

/** Holds a lock directory while building, so two agents started together build once. */
async function withBuildLock<T>(
  lockDir: string,
  isDone: () => boolean,
  log: Logger,
  body: () => Promise<T | undefined>
): Promise<T | undefined> {
  for (;;) {
    try {
      await mkdir(lockDir)
      await writeFile(join(lockDir, 'pid'), String(process.pid))
      break
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      const pid = Number(await readFile(join(lockDir, 'pid'), 'utf8').catch(() => 'NaN'))
      let alive = false
      try {
        if (Number.isInteger(pid)) {
          process.kill(pid, 0)
          alive = true
        }
      } catch {}
      if (!alive) {
        log.warn({ lockDir }, 'removing a stale llama.cpp build lock')
        await rm(lockDir, { recursive: true, force: true })
        continue
      }
      log.info({ pid }, 'another process is building llama.cpp; waiting for it')
      await new Promise((resolve) => setTimeout(resolve, 2000))
      if (isDone()) return undefined
    }
  }
  try {
    return await body()
  } finally {
    await rm(lockDir, { recursive: true, force: true })
  }
}

/** Builds (or reuses) the cached binaries for `options.build`. */
export async function buildLlamaCpp(options: BuildRunOptions): Promise<LlamaBinaries> {
  const log = (options.logger ?? silentLogger).child({ component: 'llama.cpp-build' })
  const entry = cacheEntryDir(options.cacheRoot, options.build)
  const cached = binariesInCache(entry)
  if (cached !== undefined) return cached
  checkBuildTools()

  const key = cacheKey(options.build)
  const work = join(options.cacheRoot, 'work', key)
  await mkdir(join(options.cacheRoot, 'llama.cpp'), { recursive: true })
  await mkdir(work, { recursive: true })

  const built = await withBuildLock(
    `${work}.lock`,
    () => binariesInCache(entry) !== undefined,
    log,
    async () => {
      if (binariesInCache(entry) !== undefined) return binariesInCache(entry)
      const startedAt = Date.now()
      const tarball = join(work, `node-llama-cpp-${NODE_LLAMA_CPP_VERSION}.tgz`)
      if (!existsSync(tarball)) {
        log.info({ package: `node-llama-cpp@${NODE_LLAMA_CPP_VERSION}` }, 'fetching the llama.cpp source from the npm registry')
        await run('npm pack', 'npm', ['pack', `node-llama-cpp@${NODE_LLAMA_CPP_VERSION}`, '--pack-destination', work, '--silent'], work)
      }
      const source = join(work, 'src')
      if (!existsSync(join(source, 'CMakeLists.txt'))) {
        await rm(source, { recursive: true, force: true })
        await run(
          'unpacking the source',
          'tar',
          ['-xzf', tarball, 'package/llama/gitRelease.bundle', 'package/llama/llama.cpp.info.json'],
          work
        )
        await run('git clone of the bundle', 'git', ['clone', '--quiet', join(work, 'package/llama/gitRelease.bundle'), source], work)
      }
      // the prebuilt CPU backends first: when npm cannot give them, fail before a ten-minute compile
      const modulesDir = join(work, 'modules')
      const platform = prebuiltPlatform()
      if (isLoadable(options.build)) {
        if (platform === undefined) throw new PrebuiltUnavailableError(`no prebuilt ggml backends for ${process.platform}-${process.arch}`)
        await mkdir(modulesDir, { recursive: true })
        await installModules(modulesDir, platform, ['cpu'], NODE_LLAMA_CPP_VERSION, work, log).catch((err: Error) => {
          throw new PrebuiltUnavailableError(err.message)
        })
      }
      const info = JSON.parse(await readFile(join(work, 'package/llama/llama.cpp.info.json'), 'utf8')) as { tag?: string }
      const tag = info.tag ?? 'unknown'
      const buildDir = join(source, 'build')
      const generator = findOnPath('ninja') !== undefined ? ['-G', 'Ninja'] : []
      const cmake = cmakeOptions(options.build)
      log.info({ tag, backend: options.build.backend, generator: generator[1] ?? 'Unix Makefiles' }, 'configuring llama.cpp')
      await run('cmake configure', 'cmake', ['-S', source, '-B', buildDir, ...generator, ...cmake], work)

      const jobs = options.jobs ?? availableParallelism()
      log.info({ jobs, targets: buildTargets(options.build) }, 'compiling llama.cpp (about 11 minutes on 2 cores)')
      const tracker = new BuildProgressTracker(Date.now())
      await run(
        'compile',
        'cmake',
        ['--build', buildDir, '--config', 'Release', '-j', String(jobs), '--target', ...buildTargets(options.build)],
        work,
        (line) => {
          const progress = tracker.update(line, Date.now())
          if (progress !== undefined) options.onProgress?.(progress)
        }
      )

      // Keep only the binaries and their shared libraries (about 19 MB), not the 100s of MB of objects.
      const staging = `${entry}.tmp-${process.pid}`
      await rm(staging, { recursive: true, force: true })
      await mkdir(staging, { recursive: true })
      const binDir = join(buildDir, 'bin')
      for (const name of await readdir(binDir)) {
        if ((BUILD_TARGETS as readonly string[]).includes(name) || name.includes('.so') || name.endsWith('.dylib')) {
          await cp(join(binDir, name), join(staging, name), { verbatimSymlinks: true, recursive: true })
        }
      }
      if (isLoadable(options.build)) {
        for (const name of await readdir(modulesDir)) await cp(join(modulesDir, name), join(staging, name))
      }
      const manifest: BuildManifest = {
        tag,
        version: await readLlamaVersion(join(staging, 'llama-server')),
        backend: options.build.backend,
        cmakeOptions: cmake,
        builtAt: new Date().toISOString(),
        buildSeconds: Math.round((Date.now() - startedAt) / 1000),
        rpcServer: 'ggml-rpc-server',
        llamaServer: 'llama-server',
        tools: LLAMA_TOOL_NAMES,
        loadable: isLoadable(options.build)
      }
      await writeFile(join(staging, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n')
      await rename(staging, entry)
      await rm(work, { recursive: true, force: true })
      log.info({ seconds: manifest.buildSeconds, dir: entry }, 'llama.cpp built and cached')
      const result = binariesInCache(entry)
      return result !== undefined ? { ...result, source: 'built' as const } : undefined
    }
  )
  const final = built ?? binariesInCache(entry)
  if (final === undefined) throw new BuildFailedError('caching', [`no binaries in ${entry} after the build`])
  return final
}
