import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { withMachineLock } from './machine-lock.js'

const scratch = (): string => mkdtempSync(join(tmpdir(), 'sollol-lock-'))

test('two holders of one machine lock take turns', async () => {
  const dir = scratch()
  try {
    const path = join(dir, 'measuring.lock')
    const events: string[] = []
    let release!: () => void
    const released = new Promise<void>((resolve) => (release = resolve))
    let started!: () => void
    const firstHolds = new Promise<void>((resolve) => (started = resolve))
    const first = withMachineLock(path, { waitMs: 60_000 }, async () => {
      events.push('first start')
      started()
      await released
      events.push('first end')
    })
    await firstHolds
    assert.equal(readFileSync(path, 'utf8'), String(process.pid))
    // the second finds the lock taken; the first ends only then
    const second = withMachineLock(path, { waitMs: 60_000, pollMs: 1, onBusy: () => release() }, async () => {
      events.push('second start')
    })
    await Promise.all([first, second])
    assert.deepEqual(events, ['first start', 'first end', 'second start'])
    assert.equal(existsSync(path), false, 'the lock goes with its last holder')
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test("a lock whose holder is gone is taken over; a live holder's is waited for up to the bound, then left alone", async () => {
  const dir = scratch()
  try {
    const path = join(dir, 'measuring.lock')
    const gone = spawnSync('true').pid // exited: no such process now
    writeFileSync(path, String(gone))
    let busy = 0
    assert.equal(
      await withMachineLock(path, { waitMs: 60_000, pollMs: 1, onBusy: () => busy++ }, async () => readFileSync(path, 'utf8')),
      String(process.pid)
    )
    assert.ok(busy <= 1, `waited ${busy} times for a dead holder`)
    // a live holder (this process), no wait allowed: the work runs without the lock, the holder's file stays
    writeFileSync(path, String(process.pid))
    assert.equal(await withMachineLock(path, { waitMs: 0 }, async () => 'ran'), 'ran')
    assert.equal(readFileSync(path, 'utf8'), String(process.pid))
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})
