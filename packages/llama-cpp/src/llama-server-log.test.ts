import { test } from 'node:test'
import assert from 'node:assert/strict'
import {
  allocationFailures,
  backendAbort,
  classifyExit,
  layerEndpoints,
  layerRanges,
  LoadLogParser,
  plannedLayerEndpoints,
  unloadableModel
} from './llama-server-log.js'
import { expectedLayerDevices } from '@sollol/core'
import { llamaServerArgs, prometheusValue, rpcDeviceNames } from './llama-server.js'

// Lines as llama-server (v0.4.0, -lv 5) printed them for -ts 1,2,1 over three rpc-servers.
const LOG = `0.00.015.581 I llama_prepare_model_devices: using device RPC0 (127.0.0.1:50061) (unknown id) - 24105 MiB free
0.00.015.971 I llama_prepare_model_devices: using device RPC1 (127.0.0.1:50062) (unknown id) - 24105 MiB free
0.00.016.425 I llama_prepare_model_devices: using device RPC2 (127.0.0.1:50063) (unknown id) - 24105 MiB free
0.00.018.563 D load_tensors: layer   0 assigned to device RPC2, is_swa = 0
0.00.034.217 I llama_prepare_model_devices: using device RPC0 (127.0.0.1:50061) (unknown id) - 24105 MiB free
0.00.034.584 I llama_prepare_model_devices: using device RPC1 (127.0.0.1:50062) (unknown id) - 24105 MiB free
0.00.035.085 I llama_prepare_model_devices: using device RPC2 (127.0.0.1:50063) (unknown id) - 24105 MiB free
0.00.037.252 D load_tensors: layer   0 assigned to device RPC0, is_swa = 0
0.00.037.253 D load_tensors: layer   1 assigned to device RPC0, is_swa = 0
0.00.037.254 D load_tensors: layer   2 assigned to device RPC0, is_swa = 0
0.00.037.254 D load_tensors: layer   3 assigned to device RPC1, is_swa = 0
0.00.037.255 D load_tensors: layer   4 assigned to device RPC1, is_swa = 0
0.00.037.255 D load_tensors: layer   5 assigned to device RPC1, is_swa = 0
0.00.037.256 D load_tensors: layer   6 assigned to device RPC1, is_swa = 0
0.00.037.256 D load_tensors: layer   7 assigned to device RPC2, is_swa = 0
0.00.037.257 D load_tensors: layer   8 assigned to device RPC2, is_swa = 0
0.00.042.302 I load_tensors: offloaded 9/9 layers to GPU
0.00.042.309 I load_tensors: RPC0[127.0.0.1:50061] model buffer size =     0.47 MiB
0.00.042.309 I load_tensors: RPC0[127.0.0.1:50062] model buffer size =     0.63 MiB
0.00.042.309 I load_tensors: RPC0[127.0.0.1:50063] model buffer size =     0.27 MiB
0.00.042.310 I load_tensors:   CPU_Mapped model buffer size =     0.11 MiB
0.00.049.361 I llama_kv_cache: RPC0[127.0.0.1:50061] KV buffer size =     0.19 MiB
0.00.049.362 I llama_kv_cache: RPC0[127.0.0.1:50062] KV buffer size =     0.25 MiB
0.00.049.363 I llama_kv_cache: RPC0[127.0.0.1:50062] KV buffer size =     0.50 MiB
0.00.074.822 I sched_reserve: RPC0[127.0.0.1:50061] compute buffer size =     5.26 MiB
0.00.074.823 I sched_reserve:        CPU compute buffer size =     1.02 MiB
0.00.075.822 I sched_reserve: RPC0[127.0.0.1:50061] compute buffer size =     4.00 MiB
0.06.037.118 D ~llama_context:        CPU compute buffer size is   1.0200 MiB, matches expectation of   1.0200 MiB
0.04.053.834 I srv  update_slots: all slots are idle
0.00.016.836 I print_info: n_layer               = 8
0.00.060.700 I main: server is listening on http://127.0.0.1:8099`

test('the parser reads devices, per-layer placement (last load wins), buffers and the listening address', () => {
  const parser = new LoadLogParser()
  for (const line of LOG.split('\n')) parser.push(line)
  const report = parser.report()
  assert.equal(report.deviceEndpoints.get('RPC1'), '127.0.0.1:50062')
  assert.deepEqual(report.offloaded, { layers: 9, of: 9 })
  assert.equal(report.modelBufferMiB.get('127.0.0.1:50062'), 0.63)
  assert.equal(report.modelBufferMiB.get('CPU_Mapped'), 0.11)
  assert.equal(report.kvBufferMiB.get('127.0.0.1:50061'), 0.19)
  assert.equal(report.kvBufferMiB.get('127.0.0.1:50062'), 0.75, 'two caches on one device (full and sliding-window) add up')
  assert.equal(report.computeBufferMiB.get('127.0.0.1:50061'), 5.26, 'the largest reservation')
  assert.equal(report.computeBufferMiB.get('CPU'), 1.02)
  assert.equal(report.listening, 'http://127.0.0.1:8099')
  assert.equal(report.modelInfo.get('n_layer'), '8')
  const endpoints = ['127.0.0.1:50061', '127.0.0.1:50062', '127.0.0.1:50063']
  assert.deepEqual(layerEndpoints(report), plannedLayerEndpoints(expectedLayerDevices([1, 2, 1], 8), endpoints))
  assert.deepEqual(layerRanges(layerEndpoints(report)), [
    { endpoint: '127.0.0.1:50061', first: 0, last: 2 },
    { endpoint: '127.0.0.1:50062', first: 3, last: 6 },
    { endpoint: '127.0.0.1:50063', first: 7, last: 8 }
  ])
})

test('classifyExit tells a lost rpc-server from a stop, a port clash, a bad model and a crash', () => {
  const lost = ['/ggml/src/ggml-rpc/ggml-rpc.cpp:560: Remote RPC server crashed or returned malformed response']
  assert.equal(classifyExit(134, undefined, lost, false), 'rpc-peer-lost')
  assert.equal(classifyExit(134, undefined, lost, true), 'rpc-peer-lost')
  assert.equal(classifyExit(undefined, 'SIGABRT', ['ggml-rpc.cpp:1: error'], false), 'rpc-peer-lost')
  assert.equal(classifyExit(undefined, 'SIGTERM', [], true), 'stopped')
  assert.equal(classifyExit(1, undefined, ["couldn't bind HTTP server socket, hostname: 127.0.0.1, port: 8080"], false), 'port-in-use')
  assert.equal(classifyExit(1, undefined, ['llama_model_load: error loading model: xyz'], false), 'model-load-failed')
  assert.equal(classifyExit(139, undefined, [], false), 'crashed')
})

test('llamaServerArgs puts --rpc first and keeps the split and layers explicit', () => {
  const args = llamaServerArgs({
    binary: 'x',
    model: 'm.gguf',
    rpc: ['10.0.0.1:50052', '10.0.0.2:50052'],
    tensorSplit: [1.5, 1 / 3],
    port: 8080,
    extraArgs: ['--device', 'RPC0']
  })
  assert.deepEqual(args.slice(0, 2), ['--rpc', '10.0.0.1:50052,10.0.0.2:50052'])
  assert.equal(args[args.indexOf('--tensor-split') + 1], '1.5,0.333333')
  assert.equal(args[args.indexOf('--n-gpu-layers') + 1], 'all')
  assert.deepEqual(args.slice(-2), ['--device', 'RPC0'])
})

test('llamaServerArgs passes KV cache types, and flash attention always on (what the planner prices)', () => {
  const base = { binary: 'x', model: 'm.gguf', rpc: [], port: 8080 }
  const at = (args: string[], flag: string): string | undefined => (args.includes(flag) ? args[args.indexOf(flag) + 1] : undefined)
  const keys = llamaServerArgs({ ...base, cacheTypes: { k: 'q8_0', v: 'f16' } })
  assert.deepEqual([at(keys, '--cache-type-k'), at(keys, '--cache-type-v'), at(keys, '--flash-attn')], ['q8_0', 'f16', 'on'])
  const both = llamaServerArgs({ ...base, cacheTypes: { k: 'q4_0', v: 'q4_0' } })
  assert.deepEqual([at(both, '--cache-type-k'), at(both, '--cache-type-v'), at(both, '--flash-attn')], ['q4_0', 'q4_0', 'on'])
  assert.equal(at(llamaServerArgs(base), '--cache-type-k'), undefined, "llama-server's default when none is given")
  assert.equal(at(llamaServerArgs(base), '--flash-attn'), 'on')
})

test('loading progress follows the stages of the log and only moves forward', () => {
  const parser = new LoadLogParser()
  const seen: Array<[string, number]> = []
  const lines = [
    'main: loading model',
    '0.00.006 I llama_model_loader: loaded meta data with 20 key-value pairs',
    '0.00.007 I load_tensors: loading model tensors, this can take a while... (load_mode = mmap)',
    '0.00.083 I load_tensors: RPC0[127.0.0.1:50052] model buffer size =    40.25 MiB',
    '.'.repeat(50),
    '0.00.084 I llama_model_loader: loaded meta data with 20 key-value pairs',
    '0.00.085 I llama_context: constructing llama_context',
    '0.00.086 I llama_kv_cache:        CPU KV buffer size =   128.00 MiB',
    '0.00.411 I sched_reserve: reserve took 6.04 ms, sched copies = 1',
    'main: server is listening on http://127.0.0.1:7492'
  ]
  for (const line of lines) {
    parser.push(line)
    seen.push([parser.progress().stage, parser.progress().fraction])
  }
  assert.deepEqual(seen, [
    ['starting', 0],
    ['reading the model', 0.05],
    ['placing layers', 0.1],
    ['uploading weights', 0.2],
    ['uploading weights', 0.5],
    ['uploading weights', 0.5],
    ['creating the context', 0.8],
    ['allocating the KV cache', 0.85],
    ['reserving compute buffers', 0.9],
    ['checking a first completion', 0.95]
  ])
})

test('prometheusValue reads an unlabelled sample and ignores HELP, TYPE and longer names', () => {
  const text =
    '# HELP llamacpp:n_decode_total Total decodes\n# TYPE llamacpp:n_decode_total counter\nllamacpp:n_decode_total_x 9\nllamacpp:n_decode_total 42\nllamacpp:requests_processing 1\n'
  assert.equal(prometheusValue(text, 'llamacpp:n_decode_total'), 42)
  assert.equal(prometheusValue(text, 'llamacpp:requests_processing'), 1)
  assert.equal(prometheusValue(text, 'llamacpp:requests_deferred'), undefined)
})

test('allocation failures name the rpc-server that ran out (lines of a real v0.4.0 run, rpc-server under prlimit --as)', () => {
  const lines = [
    '0.00.154.838 E alloc_tensor_range: failed to allocate RPC0[127.0.0.1:50999] buffer of size 538044416',
    '0.00.169.853 E llama_model_load: error loading model: unable to allocate RPC0[127.0.0.1:50999] buffer',
    '0.00.170.008 E llama_model_load_from_file_impl: failed to load model',
    "0.00.170.053 E cmn  common_init_: failed to load model '/tmp/m4.gguf'"
  ]
  assert.deepEqual(allocationFailures(lines), [{ endpoint: '127.0.0.1:50999', bytes: 538044416 }])
  assert.deepEqual(allocationFailures(['E alloc_tensor_range: failed to allocate CPU buffer of size 10']), [
    { endpoint: 'host', bytes: 10 }
  ])
  assert.deepEqual(allocationFailures(['E srv  load_model: failed to load model']), [])
})

test('a model llama.cpp can never load is told apart from failures a new plan may mend', () => {
  // llama-server v0.4.0's own lines (an unknown architecture, seen with a generated file)
  assert.equal(
    unloadableModel([
      "0.00.018.088 E llama_model_load: error loading model: unknown model architecture: 'sollolnet'",
      '0.00.018.094 E llama_model_load_from_file_impl: failed to load model'
    ]),
    "this llama.cpp build cannot load the model's architecture `sollolnet`"
  )
  assert.match(
    unloadableModel(["gguf_init_from_file_impl: tensor 'blk.0.ffn_up.weight' has invalid ggml type 99 (NONE)"]) ?? '',
    /cannot read the model's tensor `blk\.0\.ffn_up\.weight` \(ggml type 99/
  )
  // out of memory, a lost rpc-server: not the file's fault
  assert.equal(
    unloadableModel(['alloc_tensor_range: failed to allocate RPC0[10.0.0.2:50052] buffer of size 5', 'failed to load model']),
    undefined
  )
  assert.equal(unloadableModel(['Remote RPC server crashed or returned malformed response']), undefined)
})

test('an rpc-server with two devices: layers and buffers are told apart per device (endpoint#index)', () => {
  // llama.cpp numbers RPC devices across servers (RPC0, RPC1 on the first server, RPC2 on the second);
  // buffer names carry the device's index on its own server
  const lines = [
    'llama_prepare_model_devices: using device RPC0 (127.0.0.1:50061) (unknown id) - 2048 MiB free',
    'llama_prepare_model_devices: using device RPC1 (127.0.0.1:50061) (unknown id) - 7000 MiB free',
    'llama_prepare_model_devices: using device RPC2 (127.0.0.1:50062) (unknown id) - 7000 MiB free',
    ...[0, 1, 2, 3, 4, 5, 6, 7, 8].map(
      (il) => `load_tensors: layer   ${il} assigned to device ${il < 2 ? 'RPC0' : il < 6 ? 'RPC1' : 'RPC2'}, is_swa = 0`
    ),
    'load_tensors: RPC0[127.0.0.1:50061] model buffer size =     1.50 MiB',
    'load_tensors: RPC1[127.0.0.1:50061] model buffer size =     3.00 MiB',
    'load_tensors: RPC0[127.0.0.1:50062] model buffer size =     2.25 MiB'
  ]
  const parser = new LoadLogParser()
  for (const line of lines) parser.push(line)
  const report = parser.report()
  assert.deepEqual(layerRanges(layerEndpoints(report)), [
    { endpoint: '127.0.0.1:50061', first: 0, last: 1 },
    { endpoint: '127.0.0.1:50061#1', first: 2, last: 5 },
    { endpoint: '127.0.0.1:50062', first: 6, last: 8 }
  ])
  assert.equal(report.modelBufferMiB.get('127.0.0.1:50061'), 1.5)
  assert.equal(report.modelBufferMiB.get('127.0.0.1:50061#1'), 3)
  assert.equal(report.modelBufferMiB.get('127.0.0.1:50062'), 2.25)
  const stages = ['127.0.0.1:50061', '127.0.0.1:50061#1', '127.0.0.1:50062']
  assert.deepEqual(layerEndpoints(report), plannedLayerEndpoints(expectedLayerDevices([1.5, 4, 3.5], 8), stages))
})

test('llamaServerArgs names the RPC devices after --rpc (a GPU of the host is not used directly)', () => {
  const args = llamaServerArgs({
    binary: 'x',
    model: 'm.gguf',
    rpc: ['a:1', 'b:2'],
    tensorSplit: [4, 6, 7],
    devices: rpcDeviceNames(3),
    port: 8080
  })
  assert.ok(args.indexOf('--device') > args.indexOf('--rpc'))
  assert.equal(args[args.indexOf('--device') + 1], 'RPC0,RPC1,RPC2')
})

test('backendAbort reads which compute backend aborted an rpc-server, and nothing from other crashes', () => {
  // what ggml-rpc-server (node-llama-cpp's Vulkan backend on lavapipe) printed for a TQ1_0 model
  const vulkan = [
    'Accepted client connection',
    '/home/runner/work/node-llama-cpp/node-llama-cpp/llama/llama.cpp/ggml/src/ggml-vulkan/ggml-vulkan.cpp:9709: GGML_ASSERT(dmmv != nullptr) failed',
    '#3  0x00007f9c89a3a65e in ggml_vk_mul_mat(ggml_backend_vk_context*, ...) () from /tmp/fa/vk/libggml-vulkan.so'
  ]
  assert.deepEqual(backendAbort(vulkan), { kind: 'vulkan', line: 'ggml-vulkan.cpp:9709: GGML_ASSERT(dmmv != nullptr) failed' })
  assert.deepEqual(backendAbort(['/src/ggml/src/ggml-cuda/ggml-cuda.cu:88: CUDA error']), {
    kind: 'cuda',
    line: 'ggml-cuda.cu:88: CUDA error'
  })
  assert.equal(backendAbort(['corrupted double-linked list', 'Aborted']), undefined, 'glibc: no backend')
  assert.equal(
    backendAbort(['/src/ggml/src/ggml-rpc/ggml-rpc.cpp:566: GGML_ASSERT(x) failed']),
    undefined,
    'the RPC layer is no compute backend'
  )
  assert.equal(backendAbort(['/src/ggml/src/ggml.c:1720: GGML_ASSERT(view_src == NULL) failed']), undefined, "ggml's core")
})
