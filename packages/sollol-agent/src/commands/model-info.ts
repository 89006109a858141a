import type { Command } from 'commander'
import { readModelInfo } from '@sollol/gguf'
import { formatBytes } from '../options.js'
import { resolveModelSpec } from '../model-store.js'

export function registerModelInfo(program: Command): void {
  program
    .command('model-info')
    .description('print what the planner reads from a GGUF file: layers, context, heads, bytes per layer, KV cache per token')
    .argument('<file>', 'a GGUF model file, or ollama:NAME[:TAG]')
    .option('--json', 'print JSON')
    .action(async (file: string, o: { json?: boolean }) => {
      const info = await readModelInfo(await resolveModelSpec(file))
      if (o.json === true) {
        process.stdout.write(JSON.stringify(info, null, 2) + '\n')
        return
      }
      const layerBytes = info.layerWeightBytes
      const min = Math.min(...layerBytes)
      const max = Math.max(...layerBytes)
      process.stdout.write(
        [
          `model:        ${info.name ?? '(unnamed)'} (${info.architecture})`,
          `layers:       ${info.layerCount}, ${min === max ? formatBytes(min) : `${formatBytes(min)}-${formatBytes(max)}`} each`,
          `context:      ${info.contextLength} tokens (trained)`,
          `heads:        ${info.headCount} (kv ${info.headCountKvPerLayer !== null ? `${Math.min(...info.headCountKvPerLayer)}-${info.headCountKv} by layer` : info.headCountKv}), embedding ${info.embeddingLength}`,
          `embeddings:   ${formatBytes(info.embeddingBytes)}; output ${formatBytes(info.outputBytes)}${info.tiedOutput ? ' (tied to the embeddings)' : ''}`,
          `weights:      ${formatBytes(info.totalWeightBytes)} in all`,
          `KV cache:     ${info.kvBytesPerTokenPerLayer} bytes per token per layer (f16${info.headCountKvPerLayer !== null ? ', the most of any layer' : ''})` +
            (info.slidingWindow !== null
              ? `; ${info.slidingWindow.layers.filter(Boolean).length} of ${info.layerCount} layers attend to a window of ${info.slidingWindow.window} tokens (a smaller cache)`
              : '')
        ].join('\n') + '\n'
      )
    })
}
