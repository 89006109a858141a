import { test } from 'node:test'
import assert from 'node:assert/strict'
import { budgetAfterAllocationFailure, fenceAction, fenceBackoffMs, livenessAction, servingAction, type ServingInput } from './serving.js'

const plan = (signature: string, secondsPerToken: number, nodes: string[]) => ({
  signature,
  predictedSecondsPerToken: secondsPerToken,
  nodes
})
const base: ServingInput = {
  now: 10_000,
  running: plan('a+b', 0.1, ['a', 'b']),
  desired: plan('a+b', 0.1, ['a', 'b']),
  stillThere: new Set(['a', 'b', 'c']),
  desiredSince: 0,
  debounceMs: 1000,
  nextStartAt: 0,
  busy: false,
  lastLoadMs: 2000
}

test('serving decisions, table-tested in virtual time', () => {
  const cases: Array<[string, Partial<ServingInput>, ReturnType<typeof servingAction>]> = [
    ['running what it wants', {}, { kind: 'keep' }],
    ['nothing runs', { running: undefined }, { kind: 'start', why: 'no server' }],
    ['nothing runs, the cluster still changing', { running: undefined, desiredSince: 9500 }, { kind: 'wait', why: 'debounce' }],
    ['nothing runs, backing off after a failure', { running: undefined, nextStartAt: 12_000 }, { kind: 'wait', why: 'backoff' }],
    ['a start under way', { running: undefined, busy: true }, { kind: 'wait', why: 'busy' }],
    [
      'a node of the running plan is gone',
      { desired: plan('a', 0.2, ['a']), stillThere: new Set(['a']) },
      { kind: 'start', why: 'node gone' }
    ],
    ['a node is only suspect (still there): the plan stays', { desired: plan('a', 0.2, ['a']) }, { kind: 'keep' }],
    [
      'a join that makes it 2x faster pays for a 2 s load',
      { desired: plan('a+b+c', 0.05, ['a', 'b', 'c']) },
      { kind: 'start', why: 'pays' }
    ],
    ['a join that makes it 5 % faster does not', { desired: plan('a+b+c', 0.095, ['a', 'b', 'c']) }, { kind: 'keep' }],
    [
      'a 1.3x faster plan does not pay for a 3-minute load',
      { desired: plan('a+c', 0.077, ['a', 'c']), lastLoadMs: 180_000 },
      { kind: 'keep' }
    ],
    [
      'it pays, but wait for the cluster to be still',
      { desired: plan('a+b+c', 0.05, ['a', 'b', 'c']), desiredSince: 9900 },
      { kind: 'wait', why: 'debounce' }
    ],
    // a take-over: the old coordinator x has left; a and b of its plan have not (c is there, unfenced)
    [
      'a take-over: every node of the previous plan has left or is usable: no debounce',
      {
        running: undefined,
        desiredSince: 9900,
        takeOver: { previousPlanNodes: new Set(['x', 'a', 'b']), present: new Set(['a', 'b', 'c']) }
      },
      { kind: 'start', why: 'no server' }
    ],
    [
      'a take-over: usable but left out of the new plan still counts as settled',
      {
        running: undefined,
        desiredSince: 9900,
        desired: plan('a', 0.2, ['a']),
        takeOver: { previousPlanNodes: new Set(['x', 'a', 'b']), present: new Set(['a', 'b']) }
      },
      { kind: 'start', why: 'no server' }
    ],
    [
      'a take-over: a node of the previous plan is there but not yet fenced (not usable): debounce',
      {
        running: undefined,
        desiredSince: 9900,
        stillThere: new Set(['a']),
        takeOver: { previousPlanNodes: new Set(['x', 'a', 'b']), present: new Set(['a', 'b']) }
      },
      { kind: 'wait', why: 'debounce' }
    ],
    [
      'a take-over waits out a backoff all the same',
      {
        running: undefined,
        desiredSince: 9900,
        nextStartAt: 12_000,
        takeOver: { previousPlanNodes: new Set(['a']), present: new Set(['a']) }
      },
      { kind: 'wait', why: 'backoff' }
    ],
    [
      'a re-plan while a server runs is debounced, take-over or not',
      {
        desired: plan('a', 0.2, ['a']),
        stillThere: new Set(['a']),
        desiredSince: 9900,
        takeOver: { previousPlanNodes: new Set(['a']), present: new Set(['a']) }
      },
      { kind: 'wait', why: 'debounce' }
    ]
  ]
  for (const [what, over, expected] of cases) assert.deepEqual(servingAction({ ...base, ...over }), expected, what)
})

test('an allocation failure cuts the budget below what the failing plan put there', () => {
  assert.equal(budgetAfterAllocationFailure(2 ** 31, 400e6), 320e6)
  assert.equal(budgetAfterAllocationFailure(100e6, 400e6), 80e6)
  // again and again: it keeps shrinking, so a plan that fails is never made twice
  assert.ok(budgetAfterAllocationFailure(budgetAfterAllocationFailure(2 ** 31, 400e6), 320e6) < 320e6)
})

test('liveness: a frozen server stops at once, two failed checks stop it, checks run one at a time on the interval', () => {
  const base = { frozen: false, failures: 0, inFlight: false, lastCheckAt: 0, now: 10_000, intervalMs: 5000 }
  const cases: Array<[Partial<typeof base>, string]> = [
    [{}, 'check'],
    [{ frozen: true, failures: 0 }, 'stop:frozen'],
    [{ failures: 1 }, 'check'],
    [{ failures: 2 }, 'stop:failed'],
    [{ inFlight: true }, 'none'],
    [{ lastCheckAt: 6000 }, 'none'],
    [{ lastCheckAt: 5000 }, 'check']
  ]
  for (const [over, want] of cases) {
    const a = livenessAction({ ...base, ...over })
    assert.equal(a.kind === 'stop' ? `stop:${a.why}` : a.kind, want, JSON.stringify(over))
  }
})

test('fencing: once per (term, coordinator), not while one runs, and failed ones back off 1 s doubling to 30 s', () => {
  const base = { term: 3, coordinator: 'a', fencedFor: '2/a', fencing: false, nextFenceAt: 0, now: 1000 }
  assert.deepEqual(fenceAction(base), { kind: 'fence', key: '3/a' })
  assert.deepEqual(fenceAction({ ...base, fencedFor: '3/a' }), { kind: 'none' })
  assert.deepEqual(
    fenceAction({ ...base, fencedFor: '3/a', coordinator: 'b' }),
    { kind: 'fence', key: '3/b' },
    'another coordinator in the same term'
  )
  assert.deepEqual(fenceAction({ ...base, fencing: true }), { kind: 'none' })
  assert.deepEqual(fenceAction({ ...base, nextFenceAt: 1001 }), { kind: 'none' })
  assert.deepEqual(fenceAction({ ...base, term: 0 }), { kind: 'none' })
  assert.deepEqual([1, 2, 3, 5, 6, 10].map(fenceBackoffMs), [1000, 2000, 4000, 16_000, 30_000, 30_000])
})
