/**
 * @sollol/core: the pure heart of sollol-agent. No I/O, no libp2p, no processes: membership, the
 * announcement schema, the cluster view (and, later, election and planning). Clocks are passed in.
 *
 * @example
 * ```ts
 * const m = new Membership('default', selfId, LAN_MESH_TIMINGS)
 * m.onAnnouncement(announcement, now)   // { verdict: 'applied', events: [{ type: 'member:joined', ... }] }
 * m.tick(now + 10_000)                  // [{ type: 'member:left', reason: 'silent', ... }]
 * ```
 */
export * from './announcement.js'
export * from './backends.js'
export * from './cluster-view.js'
export * from './election.js'
export * from './planner.js'
export * from './ids.js'
export * from './layer-split.js'
export * from './membership.js'
export * from './liveness.js'
export * from './introductions.js'
export * from './timings.js'
export * from './events.js'
export * from './cost-model.js'
export * from './serving.js'
export * from './reconcile.js'
export * from './errors.js'
export * from './static-backends.js'
export * from './random.js'
export * from './kv-cache.js'
export * from './ggml-types.js'
export * from './calibration-shape.js'
