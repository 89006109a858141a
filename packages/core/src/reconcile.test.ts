import { test } from 'node:test'
import assert from 'node:assert/strict'
import {
  INITIAL_RECONCILE_STATE,
  nextActions,
  startBackoffMs,
  type CoordinatorAction,
  type Observed,
  type ReconcileState
} from './reconcile.js'
import { seededRandom } from './random.js'

const timings = { replanDebounceMs: 1000, livenessIntervalMs: 5000 }
const plan = (signature: string, nodes: string[], secondsPerToken = 0.1) => ({
  signature,
  nodes,
  predictedSecondsPerToken: secondsPerToken
})
const serving = (signature: string, nodes: string[], extra: { ready?: boolean; frozen?: boolean } = {}) => ({
  ...plan(signature, nodes),
  ready: extra.ready ?? true,
  frozen: extra.frozen ?? false
})
const fenced: ReconcileState = { ...INITIAL_RECONCILE_STATE, fencedFor: '3/me' }
const coordinator: Observed = {
  isCoordinator: true,
  term: 3,
  coordinator: 'me',
  servingTerm: 3,
  running: undefined,
  busy: false,
  stillThere: new Set(['me', 'a', 'b']),
  lastLoadMs: 2000
}
const kinds = (actions: readonly CoordinatorAction[]): string[] => actions.map((a) => ('why' in a ? `${a.kind}:${a.why}` : a.kind))

test('one decision per moment, table-tested in virtual time', () => {
  const cases: Array<[string, Partial<Observed>, Partial<ReconcileState>, ReturnType<typeof plan> | undefined, string[], string | null]> = [
    ['a follower owes the fence for the new term', { isCoordinator: false, coordinator: 'a' }, {}, undefined, ['fence'], 'not coordinator'],
    [
      'a coordinator that lost its role stops its llama-server before it fences',
      { isCoordinator: false, coordinator: 'a', running: serving('x', ['a']) },
      {},
      undefined,
      ['stop-server:not coordinator', 'fence'],
      'not coordinator'
    ],
    [
      'a fence under way is not started twice',
      { isCoordinator: false, coordinator: 'a' },
      { fencing: true },
      undefined,
      [],
      'not coordinator'
    ],
    ['a failed fence backs off', { isCoordinator: false, coordinator: 'a' }, { nextFenceAt: 20_000 }, undefined, [], 'not coordinator'],
    ['a new coordinator fences and starts nothing yet', { servingTerm: 2 }, { fencedFor: '2/a' }, plan('x', ['a']), ['fence'], 'fencing'],
    ['fenced, it waits for the plan to settle', {}, { desiredSignature: 'x', desiredSince: 9500 }, plan('x', ['a']), [], 'debounce'],
    ['a new desired plan restarts the debounce', {}, { desiredSignature: 'y', desiredSince: 0 }, plan('x', ['a']), [], 'debounce'],
    ['settled: it starts', {}, { desiredSignature: 'x', desiredSince: 8000 }, plan('x', ['a']), ['start-server:no server'], null],
    ['after failed starts it backs off', {}, { desiredSignature: 'x', nextStartAt: 12_000 }, plan('x', ['a']), [], 'backoff'],
    ['one start at a time', { busy: true }, { desiredSignature: 'x' }, plan('x', ['a']), [], 'busy'],
    ['no plan: nothing to start', {}, {}, undefined, [], 'no plan'],
    [
      'a node of the serving plan is gone: re-plan',
      { running: serving('ab', ['a', 'b']), stillThere: new Set(['me', 'a']) },
      { desiredSignature: 'a' },
      plan('a', ['a']),
      ['start-server:node gone'],
      null
    ],
    [
      'a suspect node keeps its place',
      { running: serving('ab', ['a', 'b']) },
      { desiredSignature: 'a', liveness: { failures: 0, inFlight: false, lastCheckAt: 9000 } },
      plan('a', ['a']),
      [],
      null
    ],
    [
      'serving what it wants: a liveness check when one is due',
      { running: serving('x', ['a']) },
      { desiredSignature: 'x' },
      plan('x', ['a']),
      ['check-liveness'],
      null
    ],
    [
      'a check in flight is not repeated',
      { running: serving('x', ['a']) },
      { desiredSignature: 'x', liveness: { failures: 0, inFlight: true, lastCheckAt: 0 } },
      plan('x', ['a']),
      [],
      null
    ],
    [
      'a frozen llama-server stops at once',
      { running: serving('x', ['a'], { frozen: true }) },
      { desiredSignature: 'x', liveness: { failures: 0, inFlight: true, lastCheckAt: 9999 } },
      plan('x', ['a']),
      ['stop-server:frozen'],
      null
    ],
    [
      'two failed checks stop it',
      { running: serving('x', ['a']) },
      { desiredSignature: 'x', liveness: { failures: 2, inFlight: false, lastCheckAt: 9000 } },
      plan('x', ['a']),
      ['stop-server:liveness failed'],
      null
    ],
    [
      'a loading llama-server is not checked',
      { running: serving('x', ['a'], { ready: false }) },
      { desiredSignature: 'x' },
      plan('x', ['a']),
      [],
      null
    ]
  ]
  for (const [name, observed, state, desired, expected, waiting] of cases) {
    const result = nextActions(desired, { ...coordinator, ...observed }, { ...fenced, ...state }, 10_000, timings)
    assert.deepEqual(kinds(result.actions), expected, name)
    assert.equal(result.waiting, waiting, name)
  }
})

test('the state it returns carries the debounce, the fence under way and the check under way', () => {
  const first = nextActions(plan('x', ['a']), coordinator, fenced, 10_000, timings)
  assert.deepEqual([first.state.desiredSignature, first.state.desiredSince, first.waiting], ['x', 10_000, 'debounce'])
  const same = nextActions(plan('x', ['a']), coordinator, first.state, 10_500, timings)
  assert.equal(same.state.desiredSince, 10_000, 'an unchanged plan keeps its time')
  assert.deepEqual(kinds(nextActions(plan('x', ['a']), coordinator, same.state, 11_000, timings).actions), ['start-server:no server'])

  const fencing = nextActions(undefined, { ...coordinator, servingTerm: 2 }, INITIAL_RECONCILE_STATE, 10_000, timings)
  assert.equal(fencing.state.fencing, true)
  assert.deepEqual(kinds(nextActions(undefined, { ...coordinator, servingTerm: 2 }, fencing.state, 10_100, timings).actions), [])

  const running = { ...coordinator, running: serving('x', ['a']) }
  const check = nextActions(plan('x', ['a']), running, { ...fenced, desiredSignature: 'x' }, 10_000, timings)
  assert.deepEqual(check.state.liveness, { failures: 0, inFlight: true, lastCheckAt: 10_000 })
  const stop = nextActions(
    plan('x', ['a']),
    running,
    { ...check.state, liveness: { failures: 2, inFlight: false, lastCheckAt: 10_000 } },
    11_000,
    timings
  )
  assert.deepEqual(kinds(stop.actions), ['stop-server:liveness failed'])
  assert.deepEqual([stop.state.desiredSignature, stop.state.liveness.failures], ['', 0], 'after a stop the next start is debounced')
})

test('start backoff: the base, doubling, at most 8x', () => {
  assert.deepEqual(
    [1, 2, 3, 4, 9].map((n) => startBackoffMs(n, 1000)),
    [1000, 2000, 4000, 8000, 8000]
  )
})

/**
 * A loop in virtual time against a simulated world (roles change at random, fences and checks complete or
 * fail at random, starts finish after a while): whatever happens, the decisions keep the invariants.
 */
test('whatever the world does, no start without the role and a fence for the term, one start at a time', () => {
  const random = seededRandom(11)
  let state = INITIAL_RECONCILE_STATE
  let world = { ...coordinator, term: 1, coordinator: 'me' as string | undefined, servingTerm: 0 }
  let pendingFence: { key: string; at: number } | undefined
  let pendingStart: number | undefined
  let starts = 0
  for (let now = 0; now < 600_000; now += 100) {
    if (random() < 0.003) {
      const term = world.term + 1
      const me = random() < 0.5
      world = { ...world, term, coordinator: me ? 'me' : 'a', isCoordinator: false }
    }
    // the election settles a claim of ours after a while
    if (world.coordinator === 'me' && !world.isCoordinator && random() < 0.05) world = { ...world, isCoordinator: true }
    if (pendingFence !== undefined && now >= pendingFence.at) {
      const ok = random() < 0.8
      const term = Number(pendingFence.key.split('/')[0])
      state = ok ? { ...state, fencing: false, fencedFor: pendingFence.key } : { ...state, fencing: false, nextFenceAt: now + 1000 }
      if (ok) world = { ...world, servingTerm: Math.max(world.servingTerm, term) }
      pendingFence = undefined
    }
    if (pendingStart !== undefined && now >= pendingStart) {
      world = { ...world, busy: false, running: random() < 0.7 ? serving(`s${world.term}`, ['a']) : undefined }
      if (world.running === undefined) state = { ...state, nextStartAt: now + 2000, desiredSignature: '' }
      pendingStart = undefined
    }
    if (state.liveness.inFlight && random() < 0.3) {
      state = { ...state, liveness: { ...state.liveness, inFlight: false, failures: random() < 0.2 ? state.liveness.failures + 1 : 0 } }
    }
    const desired = world.isCoordinator && world.servingTerm === world.term ? plan(`s${world.term}`, ['a']) : undefined
    const result = nextActions(desired, world, state, now, timings)
    state = result.state
    for (const action of result.actions) {
      if (action.kind === 'start-server') {
        assert.ok(world.isCoordinator, `t=${now}: a start without the role`)
        assert.equal(world.servingTerm, world.term, `t=${now}: a start before the fence for the term`)
        assert.equal(world.busy, false, `t=${now}: two starts at once`)
        world = { ...world, busy: true }
        pendingStart = now + 500 + Math.floor(random() * 3000)
        starts++
      } else if (action.kind === 'stop-server') {
        world = { ...world, running: undefined }
      } else if (action.kind === 'fence') {
        assert.equal(pendingFence, undefined, `t=${now}: two fences at once`)
        pendingFence = { key: action.key, at: now + 200 + Math.floor(random() * 1000) }
      }
    }
    // a server of an older term is stopped when the role is lost; none outlives the role by a step
    if (!world.isCoordinator) assert.equal(world.running, undefined, `t=${now}: serving without the role`)
  }
  assert.ok(starts > 5, `the simulation exercised starts: ${starts}`)
})
