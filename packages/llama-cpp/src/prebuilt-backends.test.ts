import { test } from 'node:test'
import assert from 'node:assert/strict'
import { chooseGpuModules, modulePackage, prebuiltPlatform } from './prebuilt-backends.js'

test('prebuilt backends exist for Linux x64 and arm64 only (elsewhere the source build)', () => {
  assert.equal(prebuiltPlatform('linux', 'x64'), 'linux-x64')
  assert.equal(prebuiltPlatform('linux', 'arm64'), 'linux-arm64')
  assert.equal(prebuiltPlatform('darwin', 'arm64'), undefined)
  assert.equal(prebuiltPlatform('win32', 'x64'), undefined)
})

test('each module comes from its package: the CPU variants, the Vulkan and the CUDA backend', () => {
  const cpu = modulePackage('linux-x64', 'cpu')
  assert.equal(cpu.name, '@node-llama-cpp/linux-x64')
  assert.ok(cpu.files.test('libggml-cpu-haswell.so') && cpu.files.test('libggml-cpu-x64.so'))
  assert.ok(!cpu.files.test('libggml-base.so') && !cpu.files.test('libllama.v0.4.0.so'))
  const vulkan = modulePackage('linux-x64', 'vulkan')
  assert.deepEqual([vulkan.name, vulkan.dir], ['@node-llama-cpp/linux-x64-vulkan', 'linux-x64-vulkan'])
  assert.ok(vulkan.files.test('libggml-vulkan.so') && !vulkan.files.test('libggml-cpu-zen4.so'))
  assert.equal(modulePackage('linux-arm64', 'cuda').name, '@node-llama-cpp/linux-arm64-cuda')
})

test('GPU modules: Vulkan with a loader, CUDA with the driver and its runtime, else a note saying what to install', () => {
  const ldconfig = (...libs: string[]): string =>
    `${libs.length} libs found in cache \`/etc/ld.so.cache'\n` +
    libs.map((l) => `\t${l} (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/${l}\n`).join('')
  assert.deepEqual(chooseGpuModules(ldconfig('libc.so.6'), false), { modules: [], notes: [] })
  assert.deepEqual(chooseGpuModules(ldconfig('libvulkan.so.1'), false), { modules: ['vulkan'], notes: [] })
  assert.deepEqual(chooseGpuModules(ldconfig('libvulkan.so.1', 'libcudart.so.13', 'libcublas.so.13'), true).modules, ['vulkan', 'cuda'])
  const noRuntime = chooseGpuModules(ldconfig('libvulkan.so.1', 'libcudart.so.12'), true)
  assert.deepEqual(noRuntime.modules, ['vulkan'])
  assert.match(noRuntime.notes[0] ?? '', /NVIDIA driver found but not the CUDA 13 runtime \(libcudart\.so\.13, libcublas\.so\.13\)/)
})
