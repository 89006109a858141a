/**
 * The rpc-server's tensor cache (`ggml-rpc-server --cache`), from the outside.
 *
 * How llama.cpp uses it (ggml-rpc.cpp, protocol 6): for a tensor larger than 10 MiB the client first sends
 * `SET_TENSOR_HASH` with the FNV-1a 64 hash of its bytes; the server looks for the file
 * `<cache dir>/<hash as %016llx>` and, when it is there, copies it into the tensor: the bytes never cross
 * the network. Otherwise the client sends the bytes and the server writes that file. The cache dir is
 * `$LLAMA_CACHE/rpc/`.
 *
 * What we add:
 * - **Seeding.** A machine that holds the model file writes those files itself, from the file, so layers
 *   planned on it never cross the LAN, even on the first load. llama-server sends each tensor whole, as
 *   its bytes are in the file (no conversion for RPC buffers), so the file's bytes hash the same.
 * - **A size cap.** The server never deletes anything: we evict least recently used files (by the later
 *   of modification and access time: the server's reads update atime under relatime at least once a day,
 *   and the agent touches every file a load asks for).
 */
import { createWriteStream } from 'node:fs'
import { mkdir, open, readdir, rename, rm, stat, utimes, writeFile, readFile, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { RPC_HASH_THRESHOLD } from './rpc-load-meter.js'

/** FNV-1a 64 state as four 16-bit limbs, most significant first: small-integer arithmetic only (~3x a naive version). */
export type FnvState = [number, number, number, number]

export const fnvInit = (): FnvState => [0xcbf2, 0x9ce4, 0x8422, 0x2325]

/** Folds `data` into the hash (prime 2^40 + 0x1b3: times 0x1b3 plus the state shifted left by 40). */
export function fnvUpdate(state: FnvState, data: Uint8Array): void {
  let [a, b, c, d] = state
  for (let i = 0; i < data.length; i++) {
    d ^= data[i]!
    const t0 = d * 0x1b3
    const t1 = c * 0x1b3 + (t0 >>> 16)
    const t2 = b * 0x1b3 + (t1 >>> 16) + ((d << 8) & 0xffff)
    const t3 = a * 0x1b3 + (t2 >>> 16) + (c << 8) + (d >>> 8)
    d = t0 & 0xffff
    c = t1 & 0xffff
    b = t2 & 0xffff
    a = t3 & 0xffff
  }
  state[0] = a
  state[1] = b
  state[2] = c
  state[3] = d
}

/** The cache file name llama.cpp uses for a hash: 16 lower-case hex digits. */
export const fnvHex = (state: FnvState): string => state.map((limb) => limb.toString(16).padStart(4, '0')).join('')

/** Where rpc-server keeps its cache when started with `LLAMA_CACHE=root`. */
export const rpcCacheDir = (llamaCacheRoot: string): string => join(llamaCacheRoot, 'rpc')

export interface TensorRange {
  readonly name: string
  /** The file that holds it (a shard of a split model); default the model path given to seedRpcCache. */
  readonly path?: string
  /** Absolute offset in the file. */
  readonly start: number
  readonly bytes: number
}

/**
 * Tensors whose bytes llama-server offers by hash: every one above the threshold. The input embeddings
 * are among them: with every layer offloaded, llama.cpp v0.4.0 allocates token_embd in the RPC device's
 * model buffer too (the buffer it asks an rpc-server for is the size of every tensor of the file).
 */
export function cacheableTensors(
  tensors: readonly { readonly name: string; readonly offset: number }[],
  sizes: ReadonlyMap<string, number>,
  tensorDataOffset: number,
  path?: string
): TensorRange[] {
  return tensors
    .filter((t) => (sizes.get(t.name) ?? 0) > RPC_HASH_THRESHOLD)
    .map((t) => ({ name: t.name, start: tensorDataOffset + t.offset, bytes: sizes.get(t.name)!, ...(path !== undefined ? { path } : {}) }))
}

export interface SeedResult {
  /** Files written now. */
  readonly written: number
  /** Files that were there already. */
  readonly present: number
  readonly bytes: number
  /** Tensors left out because the cache cap was reached. */
  readonly skipped: number
}

const CHUNK = 1 << 20
/** Yields to the event loop between chunks, so that an agent hashing a big model still answers pings. */
const yieldNow = async (): Promise<void> => await new Promise((resolve) => setImmediate(resolve))

/**
 * Writes a cache file for every range not in the cache yet, up to `maxBytes` of cache in all. Each file is
 * hashed while it is copied to a temporary name and renamed into place, so the server never reads half a
 * file. Remembers what it did in `<dir>/seeded-<id>.json`, so a restart does not hash the model again.
 */
export async function seedRpcCache(o: {
  readonly modelPath: string
  /** Identifies the model's content (the mesh's model id): names the record of a finished seeding. */
  readonly modelId: string
  readonly ranges: readonly TensorRange[]
  readonly cacheDir: string
  readonly maxBytes: number
  readonly signal?: AbortSignal
}): Promise<SeedResult> {
  await mkdir(o.cacheDir, { recursive: true })
  const record = join(o.cacheDir, `seeded-${o.modelId.replace(/[^A-Za-z0-9_.-]/g, '_')}.json`)
  const known = await readRecord(record)
  let used = (await listCache(o.cacheDir)).reduce((sum, f) => sum + f.bytes, 0)
  let [written, present, bytes, skipped] = [0, 0, 0, 0]
  const hashes: Record<string, string> = {}
  const files = new Map<string, FileHandle>()
  const fileOf = async (path: string): Promise<FileHandle> => {
    const open_ = files.get(path) ?? (await open(path, 'r'))
    files.set(path, open_)
    return open_
  }
  try {
    for (const range of o.ranges) {
      o.signal?.throwIfAborted()
      const knownHash = known[range.name]
      if (knownHash !== undefined && (await sizeOf(join(o.cacheDir, knownHash))) === range.bytes) {
        hashes[range.name] = knownHash
        present++
        continue
      }
      if (used + range.bytes > o.maxBytes) {
        skipped++
        continue
      }
      const file = await fileOf(range.path ?? o.modelPath)
      const temp = join(o.cacheDir, `.seed-${process.pid}-${range.name}`)
      const state = fnvInit()
      const out = createWriteStream(temp)
      const buffer = Buffer.allocUnsafe(CHUNK)
      try {
        for (let at = 0; at < range.bytes;) {
          o.signal?.throwIfAborted()
          const { bytesRead } = await file.read(buffer, 0, Math.min(CHUNK, range.bytes - at), range.start + at)
          if (bytesRead === 0)
            throw new Error(`Expected ${range.bytes} bytes of tensor ${range.name} in ${o.modelPath}, the file ended early`)
          const chunk = buffer.subarray(0, bytesRead)
          fnvUpdate(state, chunk)
          if (!out.write(Buffer.from(chunk))) await new Promise<void>((resolve) => out.once('drain', () => resolve()))
          at += bytesRead
          await yieldNow()
        }
        await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())))
      } catch (err) {
        out.destroy()
        await rm(temp, { force: true })
        throw err
      }
      const hash = fnvHex(state)
      hashes[range.name] = hash
      if ((await sizeOf(join(o.cacheDir, hash))) === range.bytes) {
        await rm(temp, { force: true })
        present++
      } else {
        await rename(temp, join(o.cacheDir, hash))
        written++
        used += range.bytes
        bytes += range.bytes
      }
    }
  } finally {
    for (const f of files.values()) await f.close()
  }
  if (skipped === 0) await writeFile(record, JSON.stringify(hashes))
  return { written, present, bytes, skipped }
}

async function readRecord(path: string): Promise<Record<string, string>> {
  try {
    const parsed = JSON.parse(await readFile(path, 'utf8')) as unknown
    return typeof parsed === 'object' && parsed !== null ? (parsed as Record<string, string>) : {}
  } catch {
    return {}
  }
}

async function sizeOf(path: string): Promise<number | undefined> {
  try {
    return (await stat(path)).size
  } catch {
    return undefined
  }
}

export interface CacheFile {
  readonly name: string
  readonly bytes: number
  /** The later of modification and access time, ms. */
  readonly usedAt: number
}

const CACHE_FILE = /^[0-9a-f]{16}$/

/** The cache's tensor files (names of 16 hex digits), with sizes and last use. */
export async function listCache(cacheDir: string): Promise<CacheFile[]> {
  let names: string[]
  try {
    names = await readdir(cacheDir)
  } catch {
    return []
  }
  const files: CacheFile[] = []
  for (const name of names.filter((n) => CACHE_FILE.test(n))) {
    try {
      const s = await stat(join(cacheDir, name))
      files.push({ name, bytes: s.size, usedAt: Math.max(s.mtimeMs, s.atimeMs) })
    } catch {}
  }
  return files
}

/** Pure: the files to delete so that the rest fits in `maxBytes`, least recently used first. */
export function evictionOrder(files: readonly CacheFile[], maxBytes: number): CacheFile[] {
  let total = files.reduce((sum, f) => sum + f.bytes, 0)
  const victims: CacheFile[] = []
  for (const file of [...files].sort((a, b) => a.usedAt - b.usedAt || a.name.localeCompare(b.name))) {
    if (total <= maxBytes) break
    victims.push(file)
    total -= file.bytes
  }
  return victims
}

/** Deletes least recently used files until the cache fits in `maxBytes`. Returns the bytes freed. */
export async function trimRpcCache(cacheDir: string, maxBytes: number): Promise<number> {
  let freed = 0
  for (const victim of evictionOrder(await listCache(cacheDir), maxBytes)) {
    await rm(join(cacheDir, victim.name), { force: true })
    freed += victim.bytes
  }
  return freed
}

/** Marks a cache file as just used (a load asked for it), for the eviction order. */
export async function touchCacheFile(cacheDir: string, name: string, now = new Date()): Promise<void> {
  if (!CACHE_FILE.test(name)) return
  await utimes(join(cacheDir, name), now, now).catch(() => undefined)
}
