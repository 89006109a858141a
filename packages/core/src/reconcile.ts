/**
 * The coordination loop's whole decision at one moment, as one pure function (the reconciler shape of
 * Kubernetes controllers and exo): the agent observes (election decision, its llama-server, the plan it
 * wants, what its pings and checks reported), asks `nextActions`, and executes what comes back. Nothing
 * here awaits or touches I/O; checks and fences run beside the loop and report their results into the
 * state the next call gets.
 *
 * Order of the rules, and why:
 * 1. Not the coordinator: stop our llama-server first (it is the one client a fence cannot cut), then owe
 *    the fence for the new (term, coordinator).
 * 2. The coordinator fences its own rpc-server for its term, and starts nothing until that fence is done
 *    (a previous coordinator's llama-server could still be connected to it).
 * 3. With a plan it can make: keep, wait or start (`servingAction`: losses re-plan, joins must pay for
 *    their reload, starts are debounced, backed off and one at a time).
 * 4. While it keeps a serving llama-server: liveness (`livenessAction`: a frozen one stops at once, two
 *    failed checks stop it, checks run beside the loop). A stop here forgets the desired plan, so the next
 *    start waits out the debounce from now.
 */
import { fenceAction, livenessAction, servingAction, type ServingInput, type ServingPlan } from './serving.js'

export interface ReconcileTimings {
  /** A start waits until the desired plan has been the same this long. */
  readonly replanDebounceMs: number
  readonly livenessIntervalMs: number
}

/** What the loop remembers between calls; the executor also writes the results of what ran beside it. */
export interface ReconcileState {
  /** The (term, coordinator) key the last successful fence was for. */
  readonly fencedFor: string
  readonly fencing: boolean
  /** No fence before this (backoff after a failed one). */
  readonly nextFenceAt: number
  /** The desired plan's signature at the last call, and since when it has been that. */
  readonly desiredSignature: string
  readonly desiredSince: number
  /** No llama-server start before this (backoff after failed starts). */
  readonly nextStartAt: number
  readonly liveness: { readonly failures: number; readonly inFlight: boolean; readonly lastCheckAt: number }
}

export const INITIAL_RECONCILE_STATE: ReconcileState = {
  fencedFor: '',
  fencing: false,
  nextFenceAt: 0,
  desiredSignature: '',
  desiredSince: 0,
  nextStartAt: 0,
  liveness: { failures: 0, inFlight: false, lastCheckAt: 0 }
}

export interface Observed {
  /** From the election: only `coordinator` may serve; every other role follows, waits or settles. */
  readonly isCoordinator: boolean
  readonly term: number
  readonly coordinator: string | undefined
  /** The term this node's own rpc-server has been fenced for. */
  readonly servingTerm: number
  /** The llama-server this node runs, if any. */
  readonly running: (ServingPlan & { readonly ready: boolean; readonly frozen: boolean }) | undefined
  /** A start or stop is under way. */
  readonly busy: boolean
  /** Nodes that have not left (alive, or suspect with a healthy rpc-server). */
  readonly stillThere: ReadonlySet<string>
  /** How long the last load took (ms); undefined before the first. */
  readonly lastLoadMs: number | undefined
  /** After a change of coordinator, what a take-over waits for (servingAction: `takeOver`). */
  readonly takeOver?: ServingInput['takeOver']
}

export type CoordinatorAction =
  | { readonly kind: 'stop-server'; readonly why: 'not coordinator' | 'frozen' | 'liveness failed' }
  | { readonly kind: 'fence'; readonly key: string }
  | { readonly kind: 'start-server'; readonly why: 'no server' | 'node gone' | 'pays' }
  | { readonly kind: 'check-liveness' }

/** Why nothing starts now, for status and logs. */
export type Waiting = 'not coordinator' | 'fencing' | 'no plan' | 'busy' | 'debounce' | 'backoff' | null

export interface Reconciled {
  readonly actions: readonly CoordinatorAction[]
  readonly waiting: Waiting
  readonly state: ReconcileState
}

/**
 * `desired`: the plan this node would serve now, or undefined when it is not the coordinator, not yet
 * fenced, or cannot plan (the caller computes it only when it may be used).
 */
export function nextActions(
  desired: ServingPlan | undefined,
  observed: Observed,
  state: ReconcileState,
  now: number,
  timings: ReconcileTimings
): Reconciled {
  const actions: CoordinatorAction[] = []
  let next = state
  const owed = fenceAction({
    term: observed.term,
    coordinator: observed.coordinator,
    fencedFor: state.fencedFor,
    fencing: state.fencing,
    nextFenceAt: state.nextFenceAt,
    now
  })
  const fence = (): void => {
    if (owed.kind !== 'fence') return
    actions.push({ kind: 'fence', key: owed.key })
    next = { ...next, fencing: true }
  }

  if (!observed.isCoordinator) {
    if (observed.running !== undefined) actions.push({ kind: 'stop-server', why: 'not coordinator' })
    fence()
    return { actions, waiting: 'not coordinator', state: next }
  }
  fence()
  if (observed.servingTerm !== observed.term) return { actions, waiting: 'fencing', state: next }
  if (desired === undefined) return { actions, waiting: 'no plan', state: next }

  if (desired.signature !== next.desiredSignature) next = { ...next, desiredSignature: desired.signature, desiredSince: now }
  const running = observed.running
  const serving = servingAction({
    now,
    running,
    desired,
    stillThere: observed.stillThere,
    desiredSince: next.desiredSince,
    debounceMs: timings.replanDebounceMs,
    nextStartAt: next.nextStartAt,
    busy: observed.busy,
    lastLoadMs: observed.lastLoadMs,
    takeOver: observed.takeOver
  })
  if (serving.kind === 'start') {
    actions.push({ kind: 'start-server', why: serving.why })
    return { actions, waiting: null, state: next }
  }
  if (serving.kind === 'wait') return { actions, waiting: serving.why, state: next }

  if (running === undefined || !running.ready) return { actions, waiting: null, state: next }
  const liveness = livenessAction({
    frozen: running.frozen,
    failures: next.liveness.failures,
    inFlight: next.liveness.inFlight,
    lastCheckAt: next.liveness.lastCheckAt,
    now,
    intervalMs: timings.livenessIntervalMs
  })
  if (liveness.kind === 'stop') {
    actions.push({ kind: 'stop-server', why: liveness.why === 'frozen' ? 'frozen' : 'liveness failed' })
    // plan again from the membership of then, debounced from now
    next = { ...next, desiredSignature: '', liveness: { ...next.liveness, failures: 0 } }
  } else if (liveness.kind === 'check') {
    actions.push({ kind: 'check-liveness' })
    next = { ...next, liveness: { ...next.liveness, inFlight: true, lastCheckAt: now } }
  }
  return { actions, waiting: null, state: next }
}

/** The wait before the next start after `failures` failed starts in a row: base, doubling, at most 8x. */
export const startBackoffMs = (failures: number, baseMs: number): number => baseMs * 2 ** Math.min(3, Math.max(0, failures - 1))
