/**
 * The machine lock over real files in a temp dir; time, waiting and process liveness are injected (no sleeps).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { acquireMachineLock } from './machine-lock.js'

function scene(): { dir: string; path: string; done: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'sollol-machine-lock-'))
  return { dir, path: join(dir, 'calibrating.lock'), done: () => rmSync(dir, { recursive: true, force: true }) }
}

test('a free lock is taken at once, holds our pid, and is gone after release (no stray files)', async () => {
  const { dir, path, done } = scene()
  const lock = await acquireMachineLock(path, { maxWaitMs: 1000, wait: async () => assert.fail('no wait when free') })
  assert.equal(lock.held, true)
  assert.equal(lock.waitedFor, undefined)
  assert.equal(readFileSync(path, 'utf8').trim(), String(process.pid))
  await lock.release()
  assert.deepEqual(readdirSync(dir), [])
  done()
})

test('a live holder is waited for until it releases', async () => {
  const { path, done } = scene()
  writeFileSync(path, '4242\n')
  let clock = 0
  let waits = 0
  const lock = await acquireMachineLock(path, {
    maxWaitMs: 10_000,
    now: () => clock,
    isAlive: (pid) => pid === 4242,
    wait: async (ms) => {
      clock += ms
      if (++waits === 3) rmSync(path) // the holder is done
    }
  })
  assert.equal(lock.held, true)
  assert.equal(lock.waitedFor, 4242)
  assert.equal(lock.waitedMs, 750)
  await lock.release()
  done()
})

test('a lock left by a dead process is taken over at once', async () => {
  const { path, done } = scene()
  writeFileSync(path, '4242\n')
  const lock = await acquireMachineLock(path, { maxWaitMs: 1000, isAlive: () => false, wait: async () => assert.fail('no wait') })
  assert.equal(lock.held, true)
  assert.equal(readFileSync(path, 'utf8').trim(), String(process.pid))
  await lock.release()
  done()
})

test('past the bound the caller goes ahead without the lock, and leaves the holder`s file alone', async () => {
  const { path, done } = scene()
  writeFileSync(path, '4242\n')
  let clock = 0
  const lock = await acquireMachineLock(path, {
    maxWaitMs: 1000,
    pollMs: 300,
    now: () => clock,
    isAlive: () => true,
    wait: async (ms) => {
      clock += ms
    }
  })
  assert.equal(lock.held, false)
  assert.equal(lock.waitedFor, 4242)
  assert.equal(lock.waitedMs, 1200)
  await lock.release()
  assert.ok(existsSync(path))
  assert.equal(readFileSync(path, 'utf8').trim(), '4242')
  done()
})
