import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DEFAULT_TEST_MODEL, readGgufHeader, writeTestModel } from '@sollol/gguf'
import {
  findLocalModels,
  ModelNotFoundError,
  ollamaStores,
  parseOllamaName,
  resolveOllamaModel,
  OLLAMA_MODEL_MEDIA_TYPE
} from './model-store.js'
import { quantizationOf } from './commands/models.js'
import { exitCodeFor, ExitCode } from './errors.js'

/** An Ollama store as `ollama pull` leaves it: a manifest per name and tag, blobs named by digest. */
function ollamaStore(root: string, model: string, name: string[], tags: string[]): string {
  const bytes = readFileSync(model)
  const digest = createHash('sha256').update(bytes).digest('hex')
  mkdirSync(join(root, 'blobs'), { recursive: true })
  writeFileSync(join(root, 'blobs', `sha256-${digest}`), bytes)
  const manifest = {
    schemaVersion: 2,
    mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
    layers: [
      { mediaType: 'application/vnd.ollama.image.template', digest: `sha256:${'1'.repeat(64)}`, size: 10 },
      { mediaType: OLLAMA_MODEL_MEDIA_TYPE, digest: `sha256:${digest}`, size: bytes.length }
    ]
  }
  mkdirSync(join(root, 'manifests', ...name), { recursive: true })
  for (const tag of tags) writeFileSync(join(root, 'manifests', ...name, tag), JSON.stringify(manifest))
  return join(root, 'blobs', `sha256-${digest}`)
}

test('Ollama names: short names are library models, the tag defaults to latest', () => {
  assert.deepEqual(parseOllamaName('llama3.2'), { path: ['registry.ollama.ai', 'library', 'llama3.2'], tag: 'latest' })
  assert.deepEqual(parseOllamaName('llama3.2:1b'), { path: ['registry.ollama.ai', 'library', 'llama3.2'], tag: '1b' })
  assert.deepEqual(parseOllamaName('me/tiny:q4'), { path: ['registry.ollama.ai', 'me', 'tiny'], tag: 'q4' })
  assert.deepEqual(parseOllamaName('hf.co/org/model:Q4_K_M'), { path: ['hf.co', 'org', 'model'], tag: 'Q4_K_M' })
  assert.throws(() => parseOllamaName('../x'), ModelNotFoundError)
  assert.deepEqual(ollamaStores({ OLLAMA_MODELS: '/srv/ollama' }, '/home/u'), ['/srv/ollama'])
  assert.deepEqual(ollamaStores({}, '/home/u'), ['/home/u/.ollama/models', '/usr/share/ollama/.ollama/models'])
})

test('an Ollama store laid out around a generated model: found by name and tag; a wrong tag names the ones there', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sollol-ollama-'))
  try {
    const model = join(dir, 'tiny.gguf')
    writeTestModel(model, DEFAULT_TEST_MODEL)
    const store = join(dir, 'store')
    const blob = ollamaStore(store, model, ['registry.ollama.ai', 'library', 'tiny'], ['latest', '1b'])
    assert.equal(await resolveOllamaModel('tiny', [store]), blob)
    assert.equal(await resolveOllamaModel('tiny:1b', [join(dir, 'nowhere'), store]), blob)
    assert.equal((await readGgufHeader(blob)).metadata['general.architecture'], 'llama', 'the blob is the GGUF')
    await assert.rejects(resolveOllamaModel('tiny:7b', [store]), (err: Error) => {
      assert.match(err.message, /Expected a tag of registry\.ollama\.ai\/library\/tiny in Ollama's store, got `7b`; it has: 1b, latest/)
      assert.equal(exitCodeFor(err), ExitCode.USAGE)
      return true
    })
    await assert.rejects(resolveOllamaModel('other', [store]), /found no such model/)
    await assert.rejects(resolveOllamaModel('tiny', [join(dir, 'nowhere')]), /found none \(looked in .*nowhere; set OLLAMA_MODELS\)/)

    // `models` finds it in the store and in a folder given, with what the header says
    const folder = join(dir, 'folder')
    mkdirSync(folder)
    writeTestModel(join(folder, 'other.gguf'), { ...DEFAULT_TEST_MODEL, type: 'f16' })
    const found = await findLocalModels({ dirs: [folder], env: { OLLAMA_MODELS: store }, home: join(dir, 'home') })
    assert.deepEqual(found.map((f) => f.source).sort(), [folder, 'ollama:tiny:1b', 'ollama:tiny:latest'])
    assert.equal(quantizationOf(await readGgufHeader(join(folder, 'other.gguf'))), 'F16')
    assert.equal(quantizationOf({ metadata: { 'general.file_type': 15 }, tensors: [] }), 'Q4_K_M')
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})
