import type { Command } from 'commander'
import { describeModel, readModelHeader, shardPaths, type GgufHeader } from '@sollol/gguf'
import type { ClusterView } from '@sollol/core'
import { formatBytes } from '../options.js'
import { findLocalModels } from '../model-store.js'
import { addClusterOptions } from './start.js'
import { formatTable } from './status.js'
import { planFromFile } from './plan.js'

/** llama.cpp's `general.file_type` (enum llama_ftype) names. */
const FILE_TYPES: Record<number, string> = {
  0: 'F32',
  1: 'F16',
  2: 'Q4_0',
  3: 'Q4_1',
  7: 'Q8_0',
  8: 'Q5_0',
  9: 'Q5_1',
  10: 'Q2_K',
  11: 'Q3_K_S',
  12: 'Q3_K_M',
  13: 'Q3_K_L',
  14: 'Q4_K_S',
  15: 'Q4_K_M',
  16: 'Q5_K_S',
  17: 'Q5_K_M',
  18: 'Q6_K',
  19: 'IQ2_XXS',
  20: 'IQ2_XS',
  21: 'Q2_K_S',
  22: 'IQ3_XS',
  23: 'IQ3_XXS',
  24: 'IQ1_S',
  25: 'IQ4_NL',
  26: 'IQ3_S',
  27: 'IQ3_M',
  28: 'IQ2_S',
  29: 'IQ2_M',
  30: 'IQ4_XS',
  31: 'IQ1_M',
  32: 'BF16',
  36: 'TQ1_0',
  37: 'TQ2_0',
  38: 'MXFP4'
}
/** ggml tensor types, for files without `general.file_type`. */
const TENSOR_TYPES: Record<number, string> = {
  0: 'F32',
  1: 'F16',
  2: 'Q4_0',
  3: 'Q4_1',
  6: 'Q5_0',
  7: 'Q5_1',
  8: 'Q8_0',
  10: 'Q2_K',
  11: 'Q3_K',
  12: 'Q4_K',
  13: 'Q5_K',
  14: 'Q6_K',
  30: 'BF16'
}

/** Pure: the quantization a GGUF says it has, else the type most of its tensors have. */
export function quantizationOf(header: Pick<GgufHeader, 'metadata' | 'tensors'>): string {
  const fileType = header.metadata['general.file_type']
  const n = typeof fileType === 'bigint' ? Number(fileType) : fileType
  if (typeof n === 'number' && FILE_TYPES[n] !== undefined) return FILE_TYPES[n]
  const counts = new Map<number, number>()
  for (const t of header.tensors) counts.set(t.ggmlType, (counts.get(t.ggmlType) ?? 0) + 1)
  const most = [...counts].sort((a, b) => b[1] - a[1])[0]?.[0]
  return most === undefined ? '-' : (TENSOR_TYPES[most] ?? `type ${most}`)
}

export interface ModelRow {
  readonly path: string
  readonly source: string
  readonly bytes: number
  readonly architecture: string | null
  readonly quantization: string | null
  /** Whether the cluster the local agent sees can hold it now (a dry-run plan); null without an agent. */
  readonly fits: boolean | null
  readonly why: string | null
}

export function registerModels(program: Command): void {
  addClusterOptions(program.command('models'))
    .description(
      "list the GGUF models this machine has (Ollama's store, the llama.cpp and Hugging Face caches, --model-dir) and whether the cluster can hold each"
    )
    .option('--model-dir <dir...>', 'also look in these folders', [])
    .option('--json', 'print JSON')
    .action(async (flags: { modelDir: string[]; json?: boolean; apiPort: number }) => {
      let view: ClusterView | undefined
      try {
        const response = await fetch(`http://127.0.0.1:${flags.apiPort}/v1/cluster`, { signal: AbortSignal.timeout(3000) })
        if (response.ok) view = (await response.json()) as ClusterView
      } catch {} // no local agent: no fit column
      const rows: ModelRow[] = []
      for (const found of await findLocalModels({ dirs: flags.modelDir })) {
        // a split model is listed once, by its first shard
        const shards = shardPaths(found.path)
        if (shards !== undefined && shards[0] !== found.path) continue
        let architecture: string | null = null
        let quantization: string | null = null
        let fits: boolean | null = null
        let why: string | null = null
        try {
          const header = await readModelHeader(found.path)
          architecture = describeModel(header).architecture
          quantization = quantizationOf(header)
          if (view !== undefined) {
            try {
              const p = await planFromFile(found.path, view, undefined)
              fits = true
              why = `${p.nodes.length} node(s), ${p.predictedTokensPerSecond.toFixed(1)} tok/s predicted`
            } catch (err) {
              fits = false
              why = (err as Error).message
            }
          }
        } catch (err) {
          why = (err as Error).message
        }
        rows.push({ ...found, architecture, quantization, fits, why })
      }
      if (flags.json === true) {
        process.stdout.write(JSON.stringify({ models: rows, cluster: view === undefined ? null : view.nodes.length }, null, 2) + '\n')
        return
      }
      if (rows.length === 0) {
        process.stdout.write(
          "no GGUF models found (Ollama's store, ~/.cache/llama.cpp, the Hugging Face cache; add folders with --model-dir)\n"
        )
        return
      }
      const table = [['MODEL', 'SIZE', 'ARCH', 'QUANT', 'FITS', 'WHERE']]
      for (const r of rows)
        table.push([
          r.source.startsWith('ollama:') ? r.source : r.path,
          formatBytes(r.bytes),
          r.architecture ?? '?',
          r.quantization ?? '?',
          r.fits === null ? '-' : r.fits ? 'yes' : 'no',
          r.source.startsWith('ollama:') ? r.path : r.source
        ])
      process.stdout.write(formatTable(table) + '\n')
      if (view === undefined) process.stdout.write('(no local agent answered: start one to see whether the cluster can hold each)\n')
      for (const r of rows)
        if (r.fits === false && r.why !== null) process.stdout.write(`${r.source.startsWith('ollama:') ? r.source : r.path}: ${r.why}\n`)
    })
}
