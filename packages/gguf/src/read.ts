import { stat } from 'node:fs/promises'
import { resolve } from 'node:path'
import { gguf } from '@huggingface/gguf'
import { checkTensorData, describeModel, GgufFormatError, type GgufHeader, type ModelInfo } from './model-info.js'
import { joinShards, readShards, type Shard } from './split.js'

/** Reads the header of a GGUF file on disk (not the weights) with @huggingface/gguf. */
export async function readGgufHeader(path: string): Promise<GgufHeader> {
  const absolute = resolve(path)
  const { size } = await stat(absolute)
  let parsed
  try {
    parsed = await gguf(absolute, { allowLocalFile: true })
  } catch (err) {
    throw new GgufFormatError(`Expected \`${path}\` to be a GGUF model file, got an unreadable file (${(err as Error).message})`)
  }
  const header: GgufHeader = {
    metadata: parsed.metadata as Record<string, unknown>,
    tensors: parsed.tensorInfos.map((info) => ({
      name: info.name,
      shape: info.shape.map(Number),
      ggmlType: info.dtype,
      offset: Number(info.offset)
    })),
    tensorDataOffset: Number(parsed.tensorDataOffset),
    fileSize: size
  }
  checkTensorData(header, path)
  return header
}

/** The header of a model: one file's, or the joined headers of a split set (given its first shard). */
export async function readModelHeader(path: string): Promise<GgufHeader> {
  return joinShards(await readShards(path, readGgufHeader))
}

/** Every file of a model: itself, or the shards of its set in order. */
export async function modelFiles(path: string): Promise<Shard[]> {
  return await readShards(path, readGgufHeader)
}

export async function readModelInfo(path: string): Promise<ModelInfo> {
  return describeModel(await readModelHeader(path))
}
