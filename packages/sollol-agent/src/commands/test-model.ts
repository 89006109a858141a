import { statSync } from 'node:fs'
import type { Command } from 'commander'
import { DEFAULT_TEST_MODEL, TEST_ARCHITECTURES, writeTestModel, type TestArchitecture } from '@sollol/gguf'
import { formatBytes, integer, oneOf } from '../options.js'

export function registerTestModel(program: Command): void {
  const d = DEFAULT_TEST_MODEL
  program
    .command('test-model')
    .description(
      'write a small GGUF (llama, qwen2, qwen3, gemma3, qwen3moe or deci) with deterministic random weights (for tests and smoke tests)'
    )
    .requiredOption('--out <file>', 'where to write the model')
    .option('--arch <name>', `architecture: ${TEST_ARCHITECTURES.join(', ')}`, oneOf('--arch', TEST_ARCHITECTURES), 'llama')
    .option('--layers <n>', 'transformer layers', integer('--layers', 1, 512), d.layers)
    .option('--embd <n>', 'hidden size (a multiple of 2 x heads)', integer('--embd', 2, 16384), d.embd)
    .option('--ff <n>', 'feed-forward size', integer('--ff', 1, 65536), d.ff)
    .option('--heads <n>', 'attention heads', integer('--heads', 1, 256), d.heads)
    .option('--context <n>', 'trained context length written to the metadata', integer('--context', 16, 1048576), d.contextLength)
    .option('--type <type>', 'weight type: f32 or f16', oneOf('--type', ['f32', 'f16'] as const), d.type)
    .option('--seed <n>', 'random seed (same seed, same bytes)', integer('--seed', 0, 2 ** 32 - 1), d.seed)
    .action(
      (o: {
        out: string
        arch: TestArchitecture
        layers: number
        embd: number
        ff: number
        heads: number
        context: number
        type: 'f32' | 'f16'
        seed: number
      }) => {
        const started = Date.now()
        writeTestModel(o.out, {
          ...d,
          arch: o.arch,
          layers: o.layers,
          embd: o.embd,
          ff: o.ff,
          heads: o.heads,
          contextLength: o.context,
          type: o.type,
          seed: o.seed
        })
        const size = statSync(o.out).size
        process.stdout.write(
          `wrote ${o.out}: ${formatBytes(size)}, ${o.arch}, ${o.layers} layers x ${o.embd} dims, ${o.type}, seed ${o.seed} (${Date.now() - started} ms)\n`
        )
      }
    )
}
