/**
 * What each agent tells the mesh about itself, and the schema every inbound copy is checked against.
 * Versioned: `incarnation` (set at agent start) and `seq` (counts up within an incarnation) order them;
 * an older announcement never overwrites a newer one.
 *
 * Version policy (a rolling upgrade must not split a cluster):
 * - `v` is the major version of the message's schema. Within a major version, fields are only added:
 *   receivers accept fields they do not know, keep them, and never act on them (every object is loose).
 * - `wire` is the range of major versions the sender speaks. A message whose `v` this agent does not speak
 *   is not dropped in silence: its envelope (who, which release, which range) is read and the peer shown as
 *   incompatible ("upgrade"), never planned with.
 * - A change that old agents would misread (a field's meaning, a removed field) takes a new major version.
 */
import { z } from 'zod'

export const ANNOUNCEMENT_VERSION = 1
/** The major versions of the announcement schema this release speaks. */
export const WIRE_RANGE = { min: 1, max: 1 } as const
/** Inbound messages above this size are dropped before parsing. */
export const MAX_ANNOUNCEMENT_BYTES = 64 * 1024

const bytes = z
  .number()
  .int()
  .min(0)
  .max(2 ** 53 - 1)
const shortText = z.string().max(256)

export const DEVICE_KINDS = ['cpu', 'cuda', 'rocm', 'metal', 'vulkan'] as const
export const RPC_ACCESS = ['gated', 'tunnel', 'direct'] as const
export const RPC_STATES = ['starting', 'ready', 'restarting', 'failed', 'stopped', 'external', 'unreachable', 'frozen'] as const

const speedSchema = z
  .object({
    /** Seconds one token takes per GiB of layer weights on this rpc-server. */
    secondsPerGiB: z.number().positive().max(1e6),
    /**
     * Seconds every token costs on it whatever it holds (llama-server's step, the round trip, launching the
     * graph: what dominates a GPU on a small model), fitted beside secondsPerGiB from two model sizes.
     * Absent: older agents and given speeds (then secondsPerGiB carries it all).
     */
    fixedSecondsPerToken: z.number().min(0).max(60).optional(),
    /** Prompt processing: seconds per prompt token per GiB of layers (measured in a model's shape only). */
    promptSecondsPerGiB: z.number().positive().max(1e6).optional(),
    measuredAt: z.string().max(40),
    method: z.string().max(256)
  })
  .loose()

export const DEVICE_TYPES = ['gpu', 'igpu', 'cpu', 'accel'] as const

export const deviceSchema = z
  .object({
    kind: z.enum(DEVICE_KINDS),
    /** As llama.cpp names it on the rpc-server (`CUDA0`, `Vulkan0`, `CPU`); older agents: a product name. */
    name: shortText,
    memoryTotal: bytes,
    memoryFree: bytes,
    /** The rpc-server's device (in its order): planned with its own budget. Older agents omit these. */
    rpcIndex: z.number().int().min(0).max(63).optional(),
    type: z.enum(DEVICE_TYPES).optional(),
    description: shortText.optional(),
    /** Bytes this device offers to the cluster (see capacity.ts: deviceBudgets). */
    budget: bytes.optional(),
    /** Measured decode speed of this device alone (an rpc-server with several devices); null until measured. */
    speed: speedSchema.nullable().optional()
  })
  .loose()

export const modelSchema = z
  .object({
    name: shortText,
    size: bytes,
    /** sha256 over the file size and its first and last MiB: cheap on a 70 GB file, distinct in practice. */
    id: z.string().regex(/^[0-9a-f]{16,64}$/),
    /**
     * What every agent calibrates with to price this model (calibration-shape.ts): its layers' width, widest
     * feed-forward, main weight type and bytes. Older agents omit it.
     */
    shape: z
      .object({
        embd: z.number().int().min(1).max(1_000_000),
        ff: z.number().int().min(1).max(10_000_000),
        type: z.string().max(16),
        layerBytes: bytes,
        layers: z.number().int().min(0).max(100_000).optional()
      })
      .loose()
      .optional()
  })
  .loose()

export const SEEDING_STATES = ['none', 'running', 'done', 'partial', 'failed'] as const

const loadSchema = z
  .object({
    startedAt: z.string().max(40),
    weightBytes: bytes,
    tensorsFromCache: z.number().int().min(0).max(1e9),
    tensorsSent: z.number().int().min(0).max(1e9),
    done: z.boolean()
  })
  .loose()

const cacheSchema = z
  .object({
    bytes,
    maxBytes: bytes,
    /** `none`: no model file here; `partial`: the cap left some tensors out. */
    seeding: z.enum(SEEDING_STATES)
  })
  .loose()

export const STATIC_BACKEND_STATES = ['probing', 'ready', 'unreachable'] as const

const staticBackendSchema = z
  .object({
    host: z.string().max(64),
    port: z.number().int().min(1).max(65535),
    /** RPC protocol version read by a probe; null until one answered. */
    protocol: z.string().max(16).nullable(),
    state: z.enum(STATIC_BACKEND_STATES),
    devices: z.array(deviceSchema).max(64),
    /** What it is planned with: 75 % of the free memory its devices reported. */
    memoryBudget: bytes,
    speed: speedSchema.nullable()
  })
  .loose()

const term = z
  .number()
  .int()
  .min(1)
  .max(2 ** 53 - 1)
const layerRange = z.tuple([z.number().int().min(0).max(100_000), z.number().int().min(0).max(100_000)])

export const assignmentSchema = z
  .object({
    peerId: z.string().min(1).max(128),
    rpc: z.string().max(64),
    /**
     * The device of the rpc-server these layers are on (`Vulkan0`, `CPU`), as llama.cpp names it there; null
     * for a node planned as one device. A node has one assignment per device it uses. Older agents omit it.
     */
    device: shortText.nullable().optional(),
    /** Inclusive range of repeating layers, 0-based; null when the node holds none. */
    layers: layerRange.nullable(),
    /** What llama-server's log says this node holds (null until read, or while no server runs). */
    actualLayers: layerRange.nullable(),
    /** This node holds the output layer. */
    output: z.boolean(),
    memoryBytes: bytes
  })
  .loose()

export const SERVER_STATES = ['waiting', 'loading', 'ready', 'failed', 'stopped'] as const

export const planSchema = z
  .object({
    term,
    generation: z
      .number()
      .int()
      .min(1)
      .max(2 ** 53 - 1),
    model: z.object({ name: shortText, id: z.string().max(64) }).loose(),
    server: z
      .object({
        url: z.string().max(256),
        state: z.enum(SERVER_STATES),
        detail: z.string().max(512).nullable(),
        /** While loading: how far, 0-1 (rough, from llama-server's log stages); later versions may omit it. */
        progress: z.number().min(0).max(1).nullable().optional(),
        /** `token`: requests need `Authorization: Bearer <--api-token>`; `none`: anyone on the LAN may use it. */
        auth: z.enum(['token', 'none'])
      })
      .loose(),
    contextSize: z.number().int().min(1).max(10_000_000),
    tensorSplit: z.array(z.number().min(0).max(1e6)).max(256),
    assignments: z.array(assignmentSchema).max(256),
    /** The split llama-server really used differs from the plan: reported, not hidden. */
    mismatch: z.string().max(512).nullable(),
    predictedTokensPerSecond: z.number().min(0).max(1e9).nullable(),
    /** Prompt tokens a second the plan's prices predict (null: a price unknown; older agents omit it). */
    predictedPromptTokensPerSecond: z.number().min(0).max(1e9).nullable().optional(),
    /**
     * The calibration the prediction is priced with: the model's shape key (`768x2048-f16`) once every node
     * measured in it, null for the generic calibration (older agents omit it).
     */
    pricedWith: z.string().max(64).nullable().optional(),
    /** Decode speed llama-server measured in one 16-token completion after the load (null until then; older agents omit it). */
    measuredTokensPerSecond: z.number().min(0).max(1e9).nullable().optional(),
    /** Live nodes not in the plan, and why (version skew, fencing, not needed, too little memory). */
    excluded: z
      .array(
        z
          .object({
            peerId: z.string().min(1).max(128),
            /** A device of a used node that holds nothing (older agents omit it). */
            device: shortText.optional(),
            reason: z.string().max(512)
          })
          .loose()
      )
      .max(256),
    /** Nodes planned below their offer because llama-server could not allocate there (older agents omit it). */
    budgetCuts: z
      .array(
        z.object({ peerId: z.string().min(1).max(128), device: shortText.optional(), budget: bytes, reason: z.string().max(512) }).loose()
      )
      .max(256)
      .optional(),
    createdAt: z.string().max(40)
  })
  .loose()

export const announcementSchema = z
  .object({
    v: z.literal(ANNOUNCEMENT_VERSION),
    /** The major versions the sender speaks (agents before this field spoke only 1). */
    wire: z
      .object({ min: z.number().int().min(1).max(1000), max: z.number().int().min(1).max(1000) })
      .loose()
      .optional(),
    cluster: z.string().max(32),
    peerId: z.string().min(1).max(128),
    incarnation: z
      .number()
      .int()
      .min(0)
      .max(2 ** 53 - 1),
    seq: z
      .number()
      .int()
      .min(0)
      .max(2 ** 53 - 1),
    hostname: shortText,
    agentVersion: z.string().max(64),
    /** libp2p multiaddrs where the agent listens (LAN addresses). */
    addresses: z.array(z.string().max(256)).max(32),
    rpc: z
      .object({
        host: z.string().max(64),
        port: z.number().int().min(1).max(65535),
        /** RPC protocol version read by a probe, e.g. `6.0.0`; null until known. */
        protocol: z.string().max(16).nullable(),
        state: z.enum(RPC_STATES),
        /** llama.cpp build the rpc-server comes from, e.g. `0.4.0-dev (build 1, commit 80fb11a)`. */
        llamaBuild: z.string().max(128),
        /**
         * Fencing: the coordinator term this rpc-server was fenced for. At every new term (or coordinator)
         * each agent cuts every connection to its rpc-server not from the coordinator (an rpc-server open
         * to the LAN is restarted instead), then says so here; a coordinator plans only with rpc-servers
         * that serve its own term.
         */
        servingTerm: z
          .number()
          .int()
          .min(0)
          .max(2 ** 53 - 1),
        /**
         * How the coordinator reaches it. `gated` (default): host:port is a gate in the agent that admits only
         * the current coordinator's address; `tunnel`: only through the mesh (encrypted, slower); `direct`:
         * the rpc-server itself, open to the LAN (--rpc-access open, or an external rpc-server).
         */
        access: z.enum(RPC_ACCESS),
        /**
         * The last load through this agent's gate or tunnel: the weights that crossed the LAN to this
         * rpc-server, and the tensors its cache supplied instead. Null before any; older agents omit it.
         */
        load: loadSchema.nullable().optional(),
        /** The rpc-server's tensor cache: its size, its cap, and whether this agent's model file is seeded into it. */
        cache: cacheSchema.nullable().optional(),
        /**
         * The last abort of one of the rpc-server's compute backends (a graph that device cannot run, such
         * as a weight type it has no kernel for), with ggml's line. The coordinator whose plan was running
         * leaves the devices of that kind out of its plans for its model. Null or absent: none.
         */
        abort: z
          .object({ at: z.string().max(40), kind: z.enum(DEVICE_KINDS), line: z.string().max(300) })
          .loose()
          .nullable()
          .optional()
      })
      .loose(),
    devices: z.array(deviceSchema).max(64),
    /** Bytes this node offers to the cluster (`--max-memory`). */
    memoryBudget: bytes,
    cpuThreads: z.number().int().min(1).max(4096),
    models: z.array(modelSchema).max(64),
    /** Holds a model and a llama-server, so it can run the cluster's llama-server. */
    canCoordinate: z.boolean(),
    /** Port of the agent's HTTP API. */
    apiPort: z.number().int().min(1).max(65535).nullable(),
    /** Measured decode speed of this node's rpc-server (see calibration); null until measured. */
    speed: speedSchema.nullable(),
    /**
     * Its speed measured again in the shape of the cluster's model (calibration-shape.ts; per device when the
     * server has several): the coordinator plans with these once every node has one for its model's shape.
     * Absent: not measured (a small model, an older agent); null: none yet.
     */
    modelSpeed: z
      .object({ shape: z.string().max(64), speed: speedSchema, devices: z.array(speedSchema.nullable()).max(64) })
      .loose()
      .nullable()
      .optional(),
    /**
     * Bare rpc-servers this agent was told of (`--rpc-backend`, `--rpc-backends-file`): they run no agent, so
     * this one probes and measures them and speaks for them. Older agents omit it.
     */
    staticBackends: z.array(staticBackendSchema).max(64).optional(),
    /**
     * How the sender watches liveness (liveness.ts): on a ring, beating `ring` neighbours each side and
     * reporting them. Older agents omit it: they beat every member and expect a beat from every member.
     */
    heartbeats: z
      .object({ ring: z.number().int().min(1).max(64) })
      .loose()
      .optional(),
    /** Whom this agent believes coordinates, and in which term. From the coordinator itself it is its claim. */
    coordinator: z
      .object({ peerId: z.string().min(1).max(128), term })
      .loose()
      .nullable(),
    /** The coordinator's current plan (only the coordinator's own announcement carries one). */
    plan: planSchema.nullable()
  })
  .loose()

/**
 * A parsed value as the code sees it: the fields this release knows. (At run time the loose schemas keep
 * unknown fields on the objects; the types leave out their index signatures, so nothing reads them.)
 */
type Known<T> = T extends readonly unknown[]
  ? { [I in keyof T]: Known<T[I]> }
  : T extends object
    ? { [K in keyof T as string extends K ? never : number extends K ? never : K]: Known<T[K]> }
    : T

export type Announcement = Known<z.infer<typeof announcementSchema>>
export type PlanView = Known<z.infer<typeof planSchema>>
export type Assignment = Known<z.infer<typeof assignmentSchema>>
export type Device = Known<z.infer<typeof deviceSchema>>
export type ModelRef = Known<z.infer<typeof modelSchema>>
export type RpcLoadView = Known<z.infer<typeof loadSchema>>
export type RpcCacheView = Known<z.infer<typeof cacheSchema>>
export type StaticBackend = Known<z.infer<typeof staticBackendSchema>>

export type ParseResult<T> = { ok: true; value: T } | { ok: false; reason: string; incompatible?: IncompatiblePeer }

/** A peer whose announcements this release cannot read: who it is, and what it speaks. */
export interface IncompatiblePeer {
  readonly peerId: string
  readonly cluster: string
  readonly hostname: string
  readonly agentVersion: string
  readonly v: number
  readonly wire: { readonly min: number; readonly max: number }
}

/** What every version of an announcement will always carry, so an incompatible peer can still be named. */
const envelopeSchema = z
  .object({
    v: z.number().int().min(1).max(1000),
    cluster: z.string().max(32),
    peerId: z.string().min(1).max(128),
    hostname: shortText,
    agentVersion: z.string().max(64),
    wire: z
      .object({ min: z.number().int().min(1).max(1000), max: z.number().int().min(1).max(1000) })
      .loose()
      .optional()
  })
  .loose()

/** Pure: whether two version ranges share a version. */
export const speaksWith = (a: { min: number; max: number }, b: { min: number; max: number }): boolean => a.min <= b.max && b.min <= a.max

/**
 * A small JSON message at the boundary: its size limit, then its schema. Never throws; each reason starts
 * with its drop kind (`too large`, `invalid`) and names `what` was read.
 */
export function parseBoundedJson<T>(raw: Uint8Array, maxBytes: number, what: string, schema: z.ZodType<T>): ParseResult<T> {
  if (raw.byteLength > maxBytes) return { ok: false, reason: `too large: ${what} of ${raw.byteLength} bytes, at most ${maxBytes}` }
  let json: unknown
  try {
    json = JSON.parse(new TextDecoder().decode(raw))
  } catch {
    return { ok: false, reason: `invalid: ${what} that is not JSON` }
  }
  const parsed = schema.safeParse(json)
  return parsed.success
    ? { ok: true, value: parsed.data }
    : { ok: false, reason: `invalid: ${what}: ${parsed.error.issues[0]?.message ?? 'schema'}` }
}

/** Decodes and validates raw bytes at the boundary: never throws. */
export function parseAnnouncement(raw: Uint8Array): ParseResult<Announcement> {
  if (raw.byteLength > MAX_ANNOUNCEMENT_BYTES) return { ok: false, reason: `too large: ${raw.byteLength} bytes` }
  let json: unknown
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(raw))
  } catch {
    return { ok: false, reason: 'not JSON' }
  }
  const envelope = envelopeSchema.safeParse(json)
  if (envelope.success && (envelope.data.v < WIRE_RANGE.min || envelope.data.v > WIRE_RANGE.max)) {
    const e = envelope.data
    return {
      ok: false,
      reason: `incompatible: version ${e.v}, this agent speaks ${WIRE_RANGE.min}-${WIRE_RANGE.max}`,
      incompatible: {
        peerId: e.peerId,
        cluster: e.cluster,
        hostname: e.hostname,
        agentVersion: e.agentVersion,
        v: e.v,
        wire: { min: e.wire?.min ?? e.v, max: e.wire?.max ?? e.v }
      }
    }
  }
  const parsed = announcementSchema.safeParse(json)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    return { ok: false, reason: `invalid at ${issue?.path.join('.') || '(root)'}: ${issue?.message ?? 'unknown'}` }
  }
  return { ok: true, value: parsed.data }
}

export function encodeAnnouncement(a: Announcement): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(a))
}

/** True when `a` is newer than `b` (same peer). */
export function isNewer(a: Pick<Announcement, 'incarnation' | 'seq'>, b: Pick<Announcement, 'incarnation' | 'seq'>): boolean {
  return a.incarnation > b.incarnation || (a.incarnation === b.incarnation && a.seq > b.seq)
}
