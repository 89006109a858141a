/**
 * Finding llama.cpp's `ggml-rpc-server` (older builds: `rpc-server`) and `llama-server`.
 * Order: explicit paths, then PATH, then the per-user build cache; building is build.ts's job.
 */
import { existsSync, readFileSync } from 'node:fs'
import { homedir } from 'node:os'
import { dirname, join } from 'node:path'
import { execa } from 'execa'
import { findOnPath } from './child.js'
import { ExitCode, SollolError } from '@sollol/core'
import type { LocalDevice } from './devices.js'

/** Names of the RPC server binary, newest first. */
export const RPC_SERVER_NAMES = ['ggml-rpc-server', 'rpc-server'] as const
export const LLAMA_SERVER_NAME = 'llama-server'

export type BinarySource = 'explicit' | 'path' | 'cache' | 'built'

export interface LlamaBinaries {
  readonly rpcServer: string
  readonly llamaServer: string
  /** llama.cpp's build as it reports itself, e.g. `v0.4.0` (release tag) or `b6500 (abc1234)`. */
  readonly version: string
  readonly source: BinarySource
  /**
   * llama.cpp's model tools from the same build (`llama-quantize`, `llama-gguf-split`): in cache entries
   * built by this release; absent for binaries given by flag or found on PATH without them.
   */
  readonly tools?: LlamaTools
  /** The folder of a cache entry built with loadable backends (where their modules go); else undefined. */
  readonly modulesDir?: string
  /** The loadable backend modules beside the binaries (`cpu`, `vulkan`, `cuda`), as setup last saw them. */
  readonly backends?: readonly string[]
  /**
   * The devices the rpc-server listed when setup arranged those modules (start-up lists them once, not
   * again in the agent and `setup`); absent where setup did not list them.
   */
  readonly devices?: readonly LocalDevice[]
}

export interface LlamaTools {
  readonly quantize: string
  readonly ggufSplit: string
}

/** The model tools built beside the servers (build targets and the names kept in the cache). */
export const LLAMA_TOOL_NAMES = { quantize: 'llama-quantize', ggufSplit: 'llama-gguf-split' } as const

/** What a cache entry records about the build in it. */
export interface BuildManifest {
  readonly tag: string
  /** What the built llama-server says of itself (`--version`); absent in entries of older agents. */
  readonly version?: string
  readonly backend: string
  readonly cmakeOptions: readonly string[]
  readonly builtAt: string
  readonly buildSeconds: number
  readonly rpcServer: string
  readonly llamaServer: string
  /** The model tools' file names in the entry (absent in entries of older agents). */
  readonly tools?: LlamaTools
  /** Built with loadable backends (`GGML_BACKEND_DL`), the ggml backend modules beside the binaries. */
  readonly loadable?: boolean
}

export class BinariesNotFoundError extends SollolError {
  constructor(message: string) {
    super(message, ExitCode.MISSING_PREREQUISITE)
  }
}

/** `$XDG_CACHE_HOME/sollol-agent` or `~/.cache/sollol-agent`. */
export function defaultCacheRoot(env: NodeJS.ProcessEnv = process.env): string {
  const xdg = env.XDG_CACHE_HOME
  return join(xdg !== undefined && xdg !== '' ? xdg : join(homedir(), '.cache'), 'sollol-agent')
}

export function readManifest(dir: string): BuildManifest | undefined {
  const file = join(dir, 'manifest.json')
  if (!existsSync(file)) return undefined
  try {
    const manifest = JSON.parse(readFileSync(file, 'utf8')) as BuildManifest
    if (existsSync(join(dir, manifest.rpcServer)) && existsSync(join(dir, manifest.llamaServer))) return manifest
  } catch {}
  return undefined
}

/** `llama-server --version` prints e.g. `version: 1 (80fb11a)`; we keep the first line that says version. */
export async function readLlamaVersion(llamaServer: string): Promise<string> {
  const result = await execa(llamaServer, ['--version'], { reject: false, all: true, timeout: 15_000 })
  const line = (result.all ?? '').split('\n').find((l) => l.startsWith('version:'))
  return line !== undefined ? line.replace(/^version:\s*/, '').trim() : 'unknown'
}

export interface ExplicitBinaries {
  /** A folder holding both binaries (e.g. a llama.cpp `build/bin`). */
  readonly binDir?: string
  readonly rpcServer?: string
  readonly llamaServer?: string
}

function inDir(dir: string): { rpcServer?: string; llamaServer?: string } {
  const rpcServer = RPC_SERVER_NAMES.map((n) => join(dir, n)).find((p) => existsSync(p))
  const llamaServer = existsSync(join(dir, LLAMA_SERVER_NAME)) ? join(dir, LLAMA_SERVER_NAME) : undefined
  return { ...(rpcServer !== undefined ? { rpcServer } : {}), ...(llamaServer !== undefined ? { llamaServer } : {}) }
}

/** Explicit paths, checked: a given path that does not exist is an error, not a fallback. */
export async function explicitBinaries(given: ExplicitBinaries): Promise<LlamaBinaries | undefined> {
  if (given.binDir === undefined && given.rpcServer === undefined && given.llamaServer === undefined) return undefined
  const fromDir = given.binDir !== undefined ? inDir(given.binDir) : {}
  const rpcServer = given.rpcServer ?? fromDir.rpcServer
  const llamaServer =
    given.llamaServer ?? fromDir.llamaServer ?? (rpcServer !== undefined ? inDir(dirname(rpcServer)).llamaServer : undefined)
  if (rpcServer === undefined || !existsSync(rpcServer))
    throw new BinariesNotFoundError(
      `Expected a ggml-rpc-server (or rpc-server) binary at ${given.rpcServer ?? given.binDir ?? '?'}, found none`
    )
  if (llamaServer === undefined || !existsSync(llamaServer))
    throw new BinariesNotFoundError(
      `Expected a llama-server binary at ${given.llamaServer ?? given.binDir ?? dirname(rpcServer)}, found none`
    )
  return { rpcServer, llamaServer, version: await readLlamaVersion(llamaServer), source: 'explicit' }
}

export async function binariesOnPath(pathVariable = process.env.PATH): Promise<LlamaBinaries | undefined> {
  const rpcServer = RPC_SERVER_NAMES.map((n) => findOnPath(n, pathVariable)).find((p) => p !== undefined)
  const llamaServer = findOnPath(LLAMA_SERVER_NAME, pathVariable)
  if (rpcServer === undefined || llamaServer === undefined) return undefined
  return { rpcServer, llamaServer, version: await readLlamaVersion(llamaServer), source: 'path' }
}

export function binariesInCache(entryDir: string): LlamaBinaries | undefined {
  const manifest = readManifest(entryDir)
  if (manifest === undefined) return undefined
  return {
    rpcServer: join(entryDir, manifest.rpcServer),
    llamaServer: join(entryDir, manifest.llamaServer),
    version: manifest.version ?? manifest.tag,
    source: 'cache',
    ...(manifest.loadable === true ? { modulesDir: entryDir } : {}),
    ...(manifest.tools !== undefined
      ? { tools: { quantize: join(entryDir, manifest.tools.quantize), ggufSplit: join(entryDir, manifest.tools.ggufSplit) } }
      : {})
  }
}
