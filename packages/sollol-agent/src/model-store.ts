/**
 * Where model files come from: a path, or a model already in Ollama's store (`ollama:NAME[:TAG]`), and the
 * GGUF files this machine has (`sollol-agent models`).
 *
 * Ollama's store (`OLLAMA_MODELS`, else `~/.ollama/models`, and the system service's
 * `/usr/share/ollama/.ollama/models`): `manifests/<host>/<namespace>/<name>/<tag>` is a JSON manifest whose
 * layer with media type `application/vnd.ollama.image.model` names the GGUF blob by digest; the blob is
 * `blobs/sha256-<hex>`. A short name is `registry.ollama.ai/library/<name>`, the tag `latest` by default.
 */
import { existsSync } from 'node:fs'
import { readdir, readFile, stat } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join, resolve } from 'node:path'
import { ExitCode, SollolError } from '@sollol/core'

export const OLLAMA_MODEL_MEDIA_TYPE = 'application/vnd.ollama.image.model'

export class ModelNotFoundError extends SollolError {
  constructor(message: string) {
    super(message, ExitCode.USAGE)
  }
}

/** Ollama's model stores on this machine, in the order Ollama itself would use them. */
export function ollamaStores(env: NodeJS.ProcessEnv = process.env, home = homedir()): string[] {
  if (env.OLLAMA_MODELS !== undefined && env.OLLAMA_MODELS !== '') return [env.OLLAMA_MODELS]
  return [join(home, '.ollama', 'models'), '/usr/share/ollama/.ollama/models']
}

/** Pure: `llama3.2:1b` -> registry.ollama.ai/library/llama3.2 and tag 1b; `host/ns/name:tag` kept whole. */
export function parseOllamaName(spec: string): { path: string[]; tag: string } {
  const at = spec.lastIndexOf(':')
  const slash = spec.lastIndexOf('/')
  const [name, tag] = at > slash ? [spec.slice(0, at), spec.slice(at + 1)] : [spec, 'latest']
  const parts = name.split('/').filter((p) => p !== '')
  if (parts.length === 0 || tag === '' || [...parts, tag].some((p) => p === '.' || p === '..'))
    throw new ModelNotFoundError(`Expected an Ollama model name like llama3.2 or llama3.2:1b, got \`${spec}\``)
  const path =
    parts.length === 1 ? ['registry.ollama.ai', 'library', parts[0]!] : parts.length === 2 ? ['registry.ollama.ai', ...parts] : parts
  return { path, tag }
}

/** The GGUF blob of an Ollama model, or an error that names what exists. */
export async function resolveOllamaModel(spec: string, stores = ollamaStores()): Promise<string> {
  const { path, tag } = parseOllamaName(spec)
  const present = stores.filter((s) => existsSync(join(s, 'manifests')))
  if (present.length === 0)
    throw new ModelNotFoundError(
      `Expected Ollama's model store for \`ollama:${spec}\`, found none (looked in ${stores.join(', ')}; set OLLAMA_MODELS)`
    )
  const tags = new Set<string>()
  for (const store of present) {
    const dir = join(store, 'manifests', ...path)
    const manifestFile = join(dir, tag)
    if (!existsSync(manifestFile)) {
      for (const t of await readdir(dir).catch(() => [] as string[])) tags.add(t)
      continue
    }
    let manifest: { layers?: Array<{ mediaType?: string; digest?: string }> }
    try {
      manifest = JSON.parse(await readFile(manifestFile, 'utf8')) as typeof manifest
    } catch (err) {
      throw new ModelNotFoundError(
        `Expected ${manifestFile} to be an Ollama manifest (JSON), got an unreadable file (${(err as Error).message})`
      )
    }
    const layer = manifest.layers?.find((l) => l.mediaType === OLLAMA_MODEL_MEDIA_TYPE)
    const digest = /^sha256:([0-9a-f]{64})$/.exec(layer?.digest ?? '')?.[1]
    if (digest === undefined)
      throw new ModelNotFoundError(`Expected ${manifestFile} to name a model layer (${OLLAMA_MODEL_MEDIA_TYPE}) by sha256 digest, got none`)
    const blob = join(store, 'blobs', `sha256-${digest}`)
    if (!existsSync(blob))
      throw new ModelNotFoundError(`Expected the blob ${blob} of \`ollama:${spec}\`, it is missing (ollama pull ${spec})`)
    return blob
  }
  const name = path.join('/')
  throw new ModelNotFoundError(
    tags.size > 0
      ? `Expected a tag of ${name} in Ollama's store, got \`${tag}\`; it has: ${[...tags].sort().join(', ')}`
      : `Expected ${name} in Ollama's store, found no such model (looked in ${present.join(', ')}; ollama pull ${spec})`
  )
}

/** `--model` as given: a path, or `ollama:NAME[:TAG]`. */
export async function resolveModelSpec(spec: string): Promise<string> {
  if (spec.startsWith('ollama:')) return await resolveOllamaModel(spec.slice('ollama:'.length))
  return resolve(spec)
}

export interface FoundModel {
  readonly path: string
  /** Where it was found: `ollama:name:tag`, `llama.cpp cache`, `hugging face cache`, or the folder given. */
  readonly source: string
  readonly bytes: number
}

async function walk(dir: string, depth: number, found: string[]): Promise<void> {
  if (depth < 0) return
  for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) await walk(path, depth - 1, found)
    else if ((entry.isFile() || entry.isSymbolicLink()) && entry.name.toLowerCase().endsWith('.gguf')) found.push(path)
  }
}

/** Every GGUF model this machine has in the usual places (and in `dirs`). */
export async function findLocalModels(o: { dirs?: readonly string[]; env?: NodeJS.ProcessEnv; home?: string } = {}): Promise<FoundModel[]> {
  const env = o.env ?? process.env
  const home = o.home ?? homedir()
  const found: FoundModel[] = []
  const add = async (path: string, source: string): Promise<void> => {
    try {
      found.push({ path, source, bytes: (await stat(path)).size })
    } catch {}
  }
  // Ollama: every manifest that names a model layer
  for (const store of ollamaStores(env, home)) {
    const manifests: string[] = []
    const collect = async (dir: string, rel: string[]): Promise<void> => {
      for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
        if (entry.isDirectory()) await collect(join(dir, entry.name), [...rel, entry.name])
        else manifests.push([...rel, entry.name].join('/'))
      }
    }
    await collect(join(store, 'manifests'), [])
    for (const m of manifests) {
      const parts = m.split('/')
      const name = parts
        .slice(0, -1)
        .join('/')
        .replace(/^registry\.ollama\.ai\/library\//, '')
      try {
        await add(await resolveOllamaModel(`${name}:${parts.at(-1)}`, [store]), `ollama:${name}:${parts.at(-1)}`)
      } catch {}
    }
  }
  const caches: Array<[string, string, number]> = [
    [env.LLAMA_CACHE ?? join(env.XDG_CACHE_HOME ?? join(home, '.cache'), 'llama.cpp'), 'llama.cpp cache', 1],
    [env.HF_HUB_CACHE ?? join(env.HF_HOME ?? join(home, '.cache', 'huggingface'), 'hub'), 'hugging face cache', 6],
    ...(o.dirs ?? []).map((d): [string, string, number] => [resolve(d), resolve(d), 4])
  ]
  for (const [dir, source, depth] of caches) {
    const paths: string[] = []
    await walk(dir, depth, paths)
    for (const path of paths.sort()) await add(path, source)
  }
  return found
}
