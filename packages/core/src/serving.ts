/**
 * Whether the coordinator keeps the llama-server it runs, waits, or starts one with the plan it wants now.
 * Pure (virtual time in, action out), so the rules are table-tested:
 * - the plan it runs is what it wants (same layers on the same rpc-servers): keep;
 * - a node of the running plan is gone (not merely suspect: `stillThere` says): re-plan, it cannot serve;
 * - otherwise the change must pay for its reload (cost-model.ts, `reloadPays`): a node that joins, or
 *   measurement noise, restarts llama-server only when the faster plan answers 10 % more tokens over the
 *   next ten minutes after loading for as long as the last load took;
 * - a start waits until the cluster has been still for `debounceMs` (one restart per burst of changes)
 *   and until the backoff after failed starts has passed; one start at a time;
 * - except a take-over: no server runs, and every node of the plan the cluster served under the previous
 *   coordinator has left or is usable in this term (fenced for it). Nothing is still arriving then, so
 *   waiting would only add to the outage. At a cold start (no previous plan) nodes finish measuring one
 *   by one, and starting with the first would keep a smaller plan (hysteresis).
 */
import { reloadPays } from './cost-model.js'

export interface ServingPlan {
  /** What requires a restart when it changes (layers per rpc-server, context). */
  readonly signature: string
  readonly predictedSecondsPerToken: number
  readonly nodes: readonly string[]
}

export interface ServingInput {
  readonly now: number
  readonly running: ServingPlan | undefined
  readonly desired: ServingPlan
  /** Nodes that have not left (alive, or suspect with a healthy rpc-server). */
  readonly stillThere: ReadonlySet<string>
  /** When the desired plan last changed: starts wait for the cluster to be still. */
  readonly desiredSince: number
  readonly debounceMs: number
  /** No start before this (backoff after failed starts). */
  readonly nextStartAt: number
  /** A start or stop is under way. */
  readonly busy: boolean
  /** How long the last load took (ms); undefined before the first. */
  readonly lastLoadMs: number | undefined
  /**
   * After a change of coordinator: the nodes of the plan the cluster served under the previous one, and
   * the nodes that have not left (whatever their state). Undefined: no earlier plan was seen.
   */
  readonly takeOver?: { readonly previousPlanNodes: ReadonlySet<string>; readonly present: ReadonlySet<string> } | undefined
}

/** A take-over with nothing left to wait for: every node of the previous plan has left or is usable now. */
const takeOverSettled = (i: ServingInput): boolean =>
  i.running === undefined &&
  i.takeOver !== undefined &&
  [...i.takeOver.previousPlanNodes].every((n) => !i.takeOver!.present.has(n) || i.stillThere.has(n))

export type ServingAction =
  | { readonly kind: 'keep' }
  | { readonly kind: 'wait'; readonly why: 'busy' | 'debounce' | 'backoff' }
  | { readonly kind: 'start'; readonly why: 'no server' | 'node gone' | 'pays' }

export function servingAction(i: ServingInput): ServingAction {
  let why: 'no server' | 'node gone' | 'pays'
  if (i.running === undefined) why = 'no server'
  else if (i.running.signature === i.desired.signature) return { kind: 'keep' }
  else if (!i.running.nodes.every((n) => i.stillThere.has(n))) why = 'node gone'
  else if (
    reloadPays({
      currentSecondsPerToken: i.running.predictedSecondsPerToken,
      desiredSecondsPerToken: i.desired.predictedSecondsPerToken,
      reloadSeconds: (i.lastLoadMs ?? 0) / 1000
    })
  )
    why = 'pays'
  else return { kind: 'keep' }
  if (i.busy) return { kind: 'wait', why: 'busy' }
  if (i.now - i.desiredSince < i.debounceMs && !takeOverSettled(i)) return { kind: 'wait', why: 'debounce' }
  if (i.now < i.nextStartAt) return { kind: 'wait', why: 'backoff' }
  return { kind: 'start', why }
}

/** Each allocation failure leaves a node this share of what it was planned to hold. */
export const BUDGET_CUT = 0.8

/**
 * The budget a node is planned with after llama-server could not allocate on it: below both what it
 * offered and what the failing plan put there, so the next plan differs and never repeats the failure.
 */
export function budgetAfterAllocationFailure(budget: number, plannedBytes: number): number {
  return Math.floor(Math.min(budget, plannedBytes) * BUDGET_CUT)
}

/** Liveness failures in a row that end a llama-server (one can be a hiccup of a busy machine). */
export const LIVENESS_STRIKES = 2

export type LivenessAction =
  { readonly kind: 'stop'; readonly why: 'frozen' | 'failed' } | { readonly kind: 'check' } | { readonly kind: 'none' }

/**
 * What to do about a running llama-server's liveness at `now`: stop a frozen one at once (a stopped process
 * never answers), stop one that failed its check LIVENESS_STRIKES times in a row, start a check when the
 * last one is `intervalMs` old and none is in flight (checks run beside the loop and report back).
 */
export function livenessAction(i: {
  readonly frozen: boolean
  readonly failures: number
  readonly inFlight: boolean
  readonly lastCheckAt: number
  readonly now: number
  readonly intervalMs: number
}): LivenessAction {
  if (i.frozen) return { kind: 'stop', why: 'frozen' }
  if (i.failures >= LIVENESS_STRIKES) return { kind: 'stop', why: 'failed' }
  if (i.inFlight || i.now - i.lastCheckAt < i.intervalMs) return { kind: 'none' }
  return { kind: 'check' }
}

/** The fence a node owes: one per (term, coordinator), none while one runs or a failed one backs off. */
export function fenceAction(i: {
  readonly term: number
  readonly coordinator: string | undefined
  readonly fencedFor: string | undefined
  readonly fencing: boolean
  readonly nextFenceAt: number
  readonly now: number
}): { readonly kind: 'fence'; readonly key: string } | { readonly kind: 'none' } {
  const key = `${i.term}/${i.coordinator ?? ''}`
  if (i.term === 0 || key === i.fencedFor || i.fencing || i.now < i.nextFenceAt) return { kind: 'none' }
  return { kind: 'fence', key }
}

/** The wait before trying a failed fence again: 1 s, doubling, at most 30 s. */
export const fenceBackoffMs = (failures: number): number => Math.min(30_000, 1000 * 2 ** Math.max(0, failures - 1))
