import { test } from 'node:test'
import assert from 'node:assert/strict'
import { CommanderError } from 'commander'
import { PlanError, SollolError } from '@sollol/core'
import { GgufFormatError } from '@sollol/gguf'
import { BinariesNotFoundError, ProcessStartError } from '@sollol/llama-cpp'
import { ClusterKeyError } from '@sollol/mesh'
import { exitCodeFor, ExitCode, InterruptedError, isExpected, UsageError } from './errors.js'

test('every error kind carries its exit code and whether its message is the whole story', () => {
  assert.equal(exitCodeFor(new UsageError('x')), ExitCode.USAGE)
  assert.equal(exitCodeFor(new GgufFormatError('x')), ExitCode.USAGE)
  assert.equal(exitCodeFor(new ClusterKeyError('x')), ExitCode.USAGE)
  assert.equal(exitCodeFor(new BinariesNotFoundError('x')), ExitCode.MISSING_PREREQUISITE)
  assert.equal(exitCodeFor(new InterruptedError('x')), ExitCode.INTERRUPTED)
  assert.equal(exitCodeFor(new PlanError('x', [])), ExitCode.FAILURE)
  assert.equal(exitCodeFor(new ProcessStartError('x', 3, undefined, [])), ExitCode.FAILURE)
  assert.equal(new ProcessStartError('x', 3, undefined, []).childExitCode, 3)
  assert.equal(exitCodeFor(new CommanderError(1, 'c', 'bad option')), ExitCode.USAGE)
  assert.equal(exitCodeFor(new Error('bug')), ExitCode.FAILURE)
  assert.equal(isExpected(new ClusterKeyError('x')), true)
  assert.equal(isExpected(new Error('bug')), false, 'an unexpected error keeps its stack trace')
  // a new kind needs nothing in the CLI: its class says it all
  class NewKindError extends SollolError {
    constructor() {
      super('new', ExitCode.MISSING_PREREQUISITE)
    }
  }
  assert.equal(exitCodeFor(new NewKindError()), ExitCode.MISSING_PREREQUISITE)
  assert.equal(new NewKindError().name, 'NewKindError')
})
