/**
 * Split GGUF files (`llama-gguf-split`): `name-00001-of-00003.gguf` ... every shard is a GGUF with the keys
 * `split.no` (0-based), `split.count` and `split.tensors.count`; the first holds the model's metadata, each
 * holds some of the tensors. llama.cpp is given the first shard and opens the others by name. Here a shard
 * set is one model: the headers of all shards are read and joined into one virtual header whose tensor
 * offsets run on from shard to shard, so sizes and layer bytes come out as for a single file.
 */
import { stat } from 'node:fs/promises'
import { GgufFormatError, type GgufHeader, type TensorEntry } from './model-info.js'

const SHARD_NAME = /^(.*)-(\d{5})-of-(\d{5})\.gguf$/

/** Pure: the shard paths of a set from the path of any of them (undefined when the name is not a shard's). */
export function shardPaths(path: string): string[] | undefined {
  const m = SHARD_NAME.exec(path)
  if (m === null) return undefined
  const count = Number(m[3])
  if (count < 1) return undefined
  return Array.from({ length: count }, (_, i) => `${m[1]}-${String(i + 1).padStart(5, '0')}-of-${m[3]}.gguf`)
}

function numberAt(metadata: Readonly<Record<string, unknown>>, key: string): number | undefined {
  const value = metadata[key]
  return typeof value === 'number' ? value : typeof value === 'bigint' ? Number(value) : undefined
}

/** How many shards a header says its set has (1 for a plain file). */
export const splitCount = (header: Pick<GgufHeader, 'metadata'>): number => numberAt(header.metadata, 'split.count') ?? 1

export interface Shard {
  readonly path: string
  readonly header: GgufHeader
}

/**
 * Pure: one header for a whole shard set (shards in order): the first shard's metadata, every tensor with
 * its offset moved past the data of the shards before it, and `tensorDataOffset` 0.
 */
export function joinShards(shards: readonly Shard[]): GgufHeader {
  const first = shards[0]
  if (first === undefined) throw new GgufFormatError('Expected at least one shard, got none')
  const tensors: TensorEntry[] = []
  let base = 0
  shards.forEach((shard, i) => {
    const no = numberAt(shard.header.metadata, 'split.no') ?? 0
    if (no !== i) throw new GgufFormatError(`Expected ${shard.path} to be shard ${i + 1} of its set, its header says ${no + 1}`)
    for (const t of shard.header.tensors) tensors.push({ ...t, offset: base + t.offset })
    base += shard.header.fileSize - shard.header.tensorDataOffset
  })
  return { metadata: first.header.metadata, tensors, tensorDataOffset: 0, fileSize: base }
}

/** Reads the shard set `path` belongs to (it must be the first shard); a plain file is a set of one. */
export async function readShards(path: string, readHeader: (path: string) => Promise<GgufHeader>): Promise<Shard[]> {
  const header = await readHeader(path)
  const count = splitCount(header)
  if (count <= 1) return [{ path, header }]
  const paths = shardPaths(path)
  if (paths === undefined || paths.length !== count)
    throw new GgufFormatError(
      `Expected \`${path}\` to be named like name-00001-of-${String(count).padStart(5, '0')}.gguf (its header says ${count} shards)`
    )
  if (paths[0] !== path) throw new GgufFormatError(`Expected the first shard of the set, \`${paths[0]}\`, got \`${path}\``)
  const shards: Shard[] = [{ path, header }]
  for (const other of paths.slice(1)) {
    await stat(other).catch(() => {
      throw new GgufFormatError(`Expected shard \`${other}\` next to \`${path}\`, it is missing`)
    })
    shards.push({ path: other, header: await readHeader(other) })
  }
  return shards
}
