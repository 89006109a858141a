import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { INCARNATION_FILE, nextIncarnation, nextPersistedIncarnation } from './identity.js'

test('incarnations grow across restarts even when the clock goes back', async () => {
  assert.equal(nextIncarnation(undefined, 1000), 1000)
  assert.equal(nextIncarnation(1000, 5000), 5000)
  assert.equal(nextIncarnation(5000, 3000), 5001, 'the clock went back: one above the last')
  const dir = mkdtempSync(join(tmpdir(), 'sollol-incarnation-'))
  try {
    const first = await nextPersistedIncarnation(dir, 2_000_000)
    const second = await nextPersistedIncarnation(dir, 1_000_000) // clock set back by 1000 s
    assert.equal(first, 2_000_000)
    assert.equal(second, 2_000_001)
    writeFileSync(join(dir, INCARNATION_FILE), 'garbage')
    assert.equal(await nextPersistedIncarnation(dir, 7), 7, 'an unreadable file starts from the clock')
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})
