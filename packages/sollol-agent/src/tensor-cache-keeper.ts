/**
 * The rpc-server's tensor cache (`-c`, in `$LLAMA_CACHE/rpc`): seeded from this machine's model file, so
 * layers planned here never cross the LAN, then kept under its cap, least recently used out first. Owns
 * the cache's part of the announcement (`rpc.cache`); tells its owner when that changed.
 */
import { statfs } from 'node:fs/promises'
import { cacheableTensors, listCache, seedRpcCache, trimRpcCache, type Logger } from '@sollol/llama-cpp'
import { modelFiles, tensorByteSizes } from '@sollol/gguf'
import type { RpcCacheView } from '@sollol/core'

export interface TensorCacheKeeperOptions {
  /** The cache directory (`rpcCacheDir($LLAMA_CACHE)`). */
  readonly dir: string
  /** Where the agent keeps its data: the default cap is half the free space of its disk. */
  readonly dataDir: string
  /** `--rpc-cache-max`; default: see defaultCacheCap. */
  readonly maxBytes?: number
  /** The model file this machine holds (undefined: nothing to seed). */
  readonly modelPath?: string
  readonly modelId: string
  /** How often the cap is enforced (the rpc-server writes the cache itself during loads). */
  readonly trimIntervalMs?: number
  readonly logger: Logger
  /** The cache's announced state changed. */
  readonly onChange: () => void
}

/**
 * The tensor cache's cap unless --rpc-cache-max says otherwise: half the free disk space where the agent
 * keeps its data, at most 64 GiB (room for the layers of a 70B Q4 model; the disk stays usable).
 */
export async function defaultCacheCap(dir: string): Promise<number> {
  try {
    const fs = await statfs(dir)
    return Math.min(64 * 2 ** 30, Math.floor((fs.bavail * fs.bsize) / 2))
  } catch {
    return 8 * 2 ** 30
  }
}

export class TensorCacheKeeper {
  private state: RpcCacheView | null = null
  private trim: NodeJS.Timeout | undefined
  private readonly abort = new AbortController()

  constructor(private readonly o: TensorCacheKeeperOptions) {}

  /** What the announcement says of the cache (null until `start`). */
  get view(): RpcCacheView | null {
    return this.state
  }

  /**
   * Seeds the cache from the model file (called after the speed measurement, so the two never compete
   * for the CPU), then trims it now and then. Resolves when seeding is over; never throws.
   */
  async start(): Promise<void> {
    const o = this.o
    const log = o.logger.child({ component: 'tensor-cache' })
    const maxBytes = o.maxBytes ?? (await defaultCacheCap(o.dataDir))
    this.state = { bytes: 0, maxBytes, seeding: o.modelPath === undefined ? 'none' : 'running' }
    if (o.modelPath !== undefined) {
      const started = Date.now()
      try {
        // every shard of a split model holds some of the tensors
        const ranges = (await modelFiles(o.modelPath)).flatMap((shard) =>
          cacheableTensors(shard.header.tensors, tensorByteSizes(shard.header), shard.header.tensorDataOffset, shard.path)
        )
        const result = await seedRpcCache({
          modelPath: o.modelPath,
          modelId: o.modelId,
          ranges,
          cacheDir: o.dir,
          maxBytes,
          signal: this.abort.signal
        })
        this.state = { ...this.state, seeding: result.skipped > 0 ? 'partial' : 'done' }
        log.info({ ...result, ms: Date.now() - started, cacheDir: o.dir }, 'tensor cache seeded from the model file')
      } catch (err) {
        if (this.abort.signal.aborted) return
        this.state = { ...this.state, seeding: 'failed' }
        log.warn({ err: (err as Error).message }, 'could not seed the tensor cache; layers placed here will be sent over the LAN once')
      }
    }
    if (this.abort.signal.aborted) return
    await this.refresh()
    this.trim = setInterval(() => {
      void trimRpcCache(o.dir, maxBytes)
        .then(async (freed) => {
          if (freed > 0) log.info({ freed }, 'tensor cache trimmed to its cap (least recently used out)')
          await this.refresh()
        })
        .catch((err: Error) => log.warn({ err: err.message }, 'tensor cache trim failed'))
    }, o.trimIntervalMs ?? 30_000)
    this.trim.unref()
  }

  /** Re-reads the cache's size and says so (after a load: the server has written what it was sent). */
  async refresh(): Promise<void> {
    const bytes = (await listCache(this.o.dir)).reduce((sum, f) => sum + f.bytes, 0)
    if (this.state !== null) this.state = { ...this.state, bytes }
    this.o.onChange()
  }

  stop(): void {
    this.abort.abort()
    clearInterval(this.trim)
  }
}
