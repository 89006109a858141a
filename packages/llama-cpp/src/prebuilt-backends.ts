/**
 * ggml's compute backends as loadable modules from node-llama-cpp's prebuilt npm packages.
 *
 * Those packages are built from the same llama.cpp release as our source build, with `GGML_BACKEND_DL`:
 * every backend is a module (`libggml-cpu-<variant>.so` for 14 x86 CPU generations, `libggml-vulkan.so`,
 * `libggml-cuda.so`) that ggml's registry loads from the binary's folder at start, picking the best CPU
 * variant for the machine. So setup compiles only what npm does not ship (the servers, the RPC backend and
 * the model tools, all as `GGML_BACKEND_DL` builds) and takes the backends from npm: the CPU variants
 * always, Vulkan where a Vulkan loader is installed, CUDA where the NVIDIA driver and the CUDA runtime are.
 * No GPU toolkit, no shader or CUDA compile on the user's machine.
 */
import { existsSync } from 'node:fs'
import { copyFile, mkdir, readdir, rename, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { execa } from 'execa'
import { silentLogger, type Logger } from './log.js'

export const PREBUILT_MODULES = ['cpu', 'vulkan', 'cuda'] as const
export type PrebuiltModule = (typeof PREBUILT_MODULES)[number]
export type GpuModule = Exclude<PrebuiltModule, 'cpu'>

/** node-llama-cpp's package name for this platform; undefined where it ships no loadable backends we use. Pure. */
export function prebuiltPlatform(platform: string = process.platform, arch: string = process.arch): string | undefined {
  if (platform === 'linux' && (arch === 'x64' || arch === 'arm64')) return `linux-${arch}`
  return undefined
}

/** The package holding a module and the files to take from it. Pure. */
export function modulePackage(
  platform: string,
  module: PrebuiltModule
): { readonly name: string; readonly dir: string; readonly files: RegExp } {
  switch (module) {
    case 'cpu':
      return { name: `@node-llama-cpp/${platform}`, dir: platform, files: /^libggml-cpu(-[\w]+)?\.so$/ }
    case 'vulkan':
      return { name: `@node-llama-cpp/${platform}-vulkan`, dir: `${platform}-vulkan`, files: /^libggml-vulkan\.so$/ }
    case 'cuda':
      return { name: `@node-llama-cpp/${platform}-cuda`, dir: `${platform}-cuda`, files: /^libggml-cuda\.so$/ }
  }
}

/** Where setup keeps a GPU module that found no device (ggml does not load from there). */
export const OPTIONAL_MODULES_DIR = 'optional'

/** The file of a GPU module (the CPU's are many variants). */
export const moduleFileName = (module: GpuModule): string => `libggml-${module}.so`

/** The module files present in a folder of binaries. */
export async function installedModules(dir: string): Promise<PrebuiltModule[]> {
  const files = existsSync(dir) ? await readdir(dir) : []
  return PREBUILT_MODULES.filter((m) => files.some((f) => modulePackage('x', m).files.test(f)))
}

/** Shared libraries the dynamic loader knows (`ldconfig -p`), for deciding which GPU modules can load. */
async function loaderLibraries(): Promise<string> {
  for (const ldconfig of ['ldconfig', '/sbin/ldconfig', '/usr/sbin/ldconfig']) {
    const result = await execa(ldconfig, ['-p'], { reject: false, timeout: 10_000 }).catch(() => undefined)
    if (result !== undefined && result.exitCode === 0) return result.stdout
  }
  return ''
}

export interface GpuModuleChoice {
  readonly modules: GpuModule[]
  /** Why a GPU module was left out although its hardware seems present (shown by setup). */
  readonly notes: string[]
}

/**
 * The GPU modules this machine can load: Vulkan with a Vulkan loader (`libvulkan.so.1`); CUDA with the
 * NVIDIA driver and the CUDA 13 runtime its module links (`libcudart.so.13`, `libcublas.so.13`). Pure.
 */
export function chooseGpuModules(libraries: string, nvidiaDriver: boolean): GpuModuleChoice {
  const has = (lib: string): boolean => libraries.includes(`${lib} `) || libraries.includes(`/${lib}\n`) || libraries.endsWith(`/${lib}`)
  const modules: GpuModule[] = []
  const notes: string[] = []
  if (has('libvulkan.so.1')) modules.push('vulkan')
  if (nvidiaDriver) {
    const missing = ['libcudart.so.13', 'libcublas.so.13'].filter((lib) => !has(lib))
    if (missing.length === 0) modules.push('cuda')
    else
      notes.push(
        `NVIDIA driver found but not the CUDA 13 runtime (${missing.join(', ')}): install it (the CUDA toolkit, or pip install nvidia-cuda-runtime nvidia-cublas) and run setup again, or build from source with --backend cuda; using ${has('libvulkan.so.1') ? 'Vulkan and ' : ''}the CPU meanwhile`
      )
  }
  return { modules, notes }
}

export async function detectGpuModules(): Promise<GpuModuleChoice> {
  return chooseGpuModules(await loaderLibraries(), existsSync('/proc/driver/nvidia/version'))
}

/**
 * Puts `modules` from node-llama-cpp@`version`'s prebuilt packages into `dir` (each file written under a
 * temporary name, then renamed: an agent starting meanwhile never loads half a file). Fetches with
 * `npm pack` (the npm registry is the only network this needs).
 */
export async function installModules(
  dir: string,
  platform: string,
  modules: readonly PrebuiltModule[],
  version: string,
  workDir: string,
  logger: Logger = silentLogger
): Promise<void> {
  for (const module of modules) {
    const pkg = modulePackage(platform, module)
    const work = join(workDir, `prebuilt-${module}-${process.pid}`)
    await rm(work, { recursive: true, force: true })
    await mkdir(work, { recursive: true })
    try {
      logger.info({ package: `${pkg.name}@${version}` }, `fetching the prebuilt ${module} backend`)
      const packed = await execa('npm', ['pack', `${pkg.name}@${version}`, '--silent'], { cwd: work, reject: false, stdin: 'ignore' })
      const tarball = packed.stdout.trim().split('\n').pop() ?? ''
      if (packed.exitCode !== 0 || tarball === '')
        throw new Error(`npm pack ${pkg.name}@${version} failed: ${packed.stderr.trim().split('\n').pop() ?? ''}`)
      const untar = await execa('tar', ['-xzf', tarball, `package/bins/${pkg.dir}`], { cwd: work, reject: false })
      if (untar.exitCode !== 0) throw new Error(`unpacking ${tarball} failed: ${untar.stderr.trim()}`)
      const from = join(work, 'package', 'bins', pkg.dir)
      const files = (await readdir(from)).filter((f) => pkg.files.test(f))
      if (files.length === 0) throw new Error(`${pkg.name}@${version} holds no ${String(pkg.files)} in bins/${pkg.dir}`)
      for (const file of files) {
        const partial = join(dir, `.${file}.${process.pid}.tmp`)
        await copyFile(join(from, file), partial)
        await rename(partial, join(dir, file))
      }
    } finally {
      await rm(work, { recursive: true, force: true })
    }
  }
}
