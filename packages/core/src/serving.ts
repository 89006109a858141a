/**
 * Whether the coordinator keeps the llama-server it runs, waits, or starts one with the plan it wants now.
 * Pure (virtual time in, action out), so the rules are table-tested:
 * - the plan it runs is what it wants (same layers on the same rpc-servers): keep;
 * - a node of the running plan is gone (not merely suspect: `stillThere` says): re-plan, it cannot serve;
 * - otherwise the change must pay for its reload (cost-model.ts, `reloadPays`): a node that joins, or
 *   measurement noise, restarts llama-server only when the faster plan answers 10 % more tokens over the
 *   next ten minutes after loading for as long as the last load took;
 * - a start waits until the cluster has been still for `debounceMs` (one restart per burst of changes)
 *   and until the backoff after failed starts has passed; one start at a time.
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
}

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
  if (i.now - i.desiredSince < i.debounceMs) return { kind: 'wait', why: 'debounce' }
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
