import { test } from 'node:test'
import assert from 'node:assert/strict'
import { defaultServedDevices, parseDeviceList } from './devices.js'

const MIB = 2 ** 20

test('parseDeviceList reads what ggml-rpc-server prints for an unknown device', () => {
  const text = [
    'error: unknown device: sollol-list-devices',
    'available devices:',
    '  Vulkan0: llvmpipe (LLVM 15.0.6, 256 bits) (2048 MiB, 2048 MiB free)',
    '  CPU: AMD EPYC (24105 MiB, 24105 MiB free)',
    'No devices found'
  ].join('\n')
  assert.deepEqual(parseDeviceList(text), [
    {
      name: 'Vulkan0',
      description: 'llvmpipe (LLVM 15.0.6, 256 bits)',
      backend: 'vulkan',
      memoryTotal: 2048 * MIB,
      memoryFree: 2048 * MIB
    },
    { name: 'CPU', description: 'AMD EPYC', backend: 'cpu', memoryTotal: 24105 * MIB, memoryFree: 24105 * MIB }
  ])
  assert.deepEqual(parseDeviceList('Starting RPC server v6.0.0\n'), [])
})

test('an agent serves its accelerators and then its CPU; a CPU-only machine keeps the default', () => {
  const device = (name: string, backend: 'cpu' | 'cuda' | 'vulkan') => ({ name, description: '', backend, memoryTotal: 0, memoryFree: 0 })
  assert.deepEqual(defaultServedDevices([device('CUDA0', 'cuda'), device('CUDA1', 'cuda'), device('CPU', 'cpu')]), [
    'CUDA0',
    'CUDA1',
    'CPU'
  ])
  assert.deepEqual(defaultServedDevices([device('CPU', 'cpu'), device('Vulkan0', 'vulkan')]), ['Vulkan0', 'CPU'])
  assert.equal(defaultServedDevices([device('CPU', 'cpu')]), undefined)
})
