/**
 * @sollol/gguf: read what a planner needs from a GGUF model file, and write small deterministic
 * test models that llama.cpp loads.
 *
 * @example
 * ```ts
 * import { writeTestModel, readModelInfo } from '@sollol/gguf'
 * writeTestModel('/tmp/m.gguf', { ...DEFAULT_TEST_MODEL, layers: 16 })
 * const info = await readModelInfo('/tmp/m.gguf') // info.layerCount === 16
 * ```
 */
export { checkTensorData, describeModel, kvBytesPerLayer, tensorByteSizes, tensorDataBytes, GgufFormatError } from './model-info.js'
export type { GgufHeader, ModelInfo, TensorEntry } from './model-info.js'
export { modelFiles, readGgufHeader, readModelHeader, readModelInfo } from './read.js'
export { joinShards, shardPaths, splitCount, type Shard } from './split.js'
export {
  buildTestModel,
  seededRandom,
  writeSplitTestModel,
  writeTestModel,
  testVocabulary,
  validateTestModelOptions,
  DEFAULT_TEST_MODEL,
  SPLIT_TEST_MODEL,
  TEST_ARCHITECTURES,
  TEST_MOE,
  TEST_SLIDING_WINDOW,
  TestModelOptionError
} from './test-model.js'
export type { TestArchitecture, TestModel, TestModelOptions } from './test-model.js'
export { writeGguf, encodeHeader, toFloat16Bits, TensorType, ValueType } from './writer.js'
export type { MetadataEntry, TensorSpec } from './writer.js'
