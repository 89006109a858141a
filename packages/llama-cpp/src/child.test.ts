import { test } from 'node:test'
import assert from 'node:assert/strict'
import { OutputRing } from './child.js'

test("an abort's gdb backtrace does not push the line that explains it out of the tail", () => {
  const ring = new OutputRing(100)
  ring.push('load_tensors: loading model tensors')
  ring.push('/llama.cpp/ggml/src/ggml-rpc/ggml-rpc.cpp:598: Remote RPC server crashed or returned malformed response')
  ring.push('[New LWP 7240]')
  ring.push('[Thread debugging using libthread_db enabled]')
  for (let i = 0; i < 30; i++) ring.push(`#${i}  0x00007f39fac45305 in frame${i} () at file.c:${i}`)
  ring.push('58\t../sysdeps/nptl/libc_start_call_main.h: No such file or directory.')
  ring.push('[Inferior 1 (process 7237) detached]')
  assert.deepEqual(ring.tail(2), [
    'load_tensors: loading model tensors',
    '/llama.cpp/ggml/src/ggml-rpc/ggml-rpc.cpp:598: Remote RPC server crashed or returned malformed response'
  ])
})
