/**
 * Byte-level attacks on an agent's network ports, run from a test host (or by scripts/fuzz-wire.mjs):
 *   node wire-fuzz.js <spec.json>
 * spec: { durationMs, seed, targets: [{ host, p2pPort, peerId, keyFile?, rpcPort? }] }
 * Rounds of every attack run against every target until the duration is spent; prints one JSON summary
 * (per attack: runs, connections, bytes sent). What each attack sends:
 * - raw: random bytes straight at the libp2p port (no key, or before the pnet nonce);
 * - nonce: a 24-byte pnet nonce, then random bytes (a wrong key, as far as the agent can tell);
 * - pnetGarbage (keyed targets): the right key, then random bytes the Noise handshake must refuse;
 * - noiseGarbage: a correct multistream header for /noise (through the key where there is one), then
 *   random and oversized Noise messages;
 * - mutated: a real libp2p connection (key and Noise correct) whose yamux bytes are mutated after the
 *   handshake: flipped bits, random frame lengths, random stream ids, so malformed yamux frames, multistream
 *   headers, gossip frames and protocol messages reach the agent;
 * - oversized: a real member (when it holds the key, or of an open cluster) publishing 1-4 MiB gossip
 *   messages and opening protocol streams that claim a 1 GiB message, then sending 1 MiB;
 * - crowd: 64 connections opened at once that never send a byte (pending-connection limits);
 * - rpc: random bytes at the rpc port (the gate must refuse a non-coordinator);
 * - flood (all along, beside the rounds): a member on one connection per target sending 1-4 MiB gossip
 *   messages and 256 KiB protocol messages that claim 1 GiB, a few a second, for the whole duration.
 */
import { readFileSync } from 'node:fs'
import { connect, type Socket } from 'node:net'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { gossipsub } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import type { ConnectionEncrypter, MessageStream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import { seededRandom } from '@sollol/gguf'
import {
  announceTopic,
  decodeSwarmKey,
  heartbeatProtocol,
  helloProtocol,
  introductionsProtocol,
  privateNetwork,
  readClusterKey,
  stateProtocol,
  XSalsa20Stream
} from '@sollol/mesh'

interface Target {
  readonly host: string
  readonly p2pPort: number
  readonly peerId: string
  readonly keyFile?: string
  readonly rpcPort?: number
  readonly cluster?: string
}
interface Spec {
  readonly durationMs: number
  readonly seed: number
  readonly targets: readonly Target[]
}

const spec = JSON.parse(readFileSync(process.argv[2] ?? '', 'utf8')) as Spec
const rand = seededRandom(spec.seed)
const randomBytes = (n: number): Uint8Array => {
  const out = new Uint8Array(n)
  for (let i = 0; i < n; i++) out[i] = Math.floor(rand() * 256)
  return out
}
const sizeUpTo = (max: number): number => 1 + Math.floor(rand() ** 3 * max)

type Stats = { runs: number; connections: number; bytes: number; errors: number }
const summary: Record<string, Stats> = {}
const count = (attack: string, connections: number, bytes: number, error = false): void => {
  const s = (summary[attack] ??= { runs: 0, connections: 0, bytes: 0, errors: 0 })
  s.runs++
  s.connections += connections
  s.bytes += bytes
  if (error) s.errors++
}

/** A TCP connection for `attack`, counted (bytes through `send`; an error if it failed); closed within `limitMs`. */
async function socketAttack(
  attack: string,
  host: string,
  port: number,
  limitMs: number,
  talk: (send: (data: Uint8Array) => Promise<void>, read: () => Promise<Buffer>, socket: Socket) => Promise<void>
): Promise<void> {
  const socket = connect({ host, port })
  const chunks: Buffer[] = []
  let waiting: (() => void) | undefined
  socket.on('data', (chunk: Buffer) => {
    chunks.push(chunk)
    waiting?.()
  })
  socket.on('error', () => {})
  const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()))
  const read = async (): Promise<Buffer> => {
    while (chunks.length === 0) {
      if (socket.destroyed) throw new Error('closed')
      await Promise.race([new Promise<void>((resolve) => (waiting = resolve)), closed])
    }
    return chunks.shift() ?? Buffer.alloc(0)
  }
  let sent = 0
  const send = async (data: Uint8Array): Promise<void> => {
    await write(socket, data)
    sent += data.length
  }
  const timer = setTimeout(() => socket.destroy(), limitMs)
  let failed = false
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve)
      socket.once('error', reject)
    })
    await talk(send, read, socket)
  } catch {
    failed = true
  } finally {
    clearTimeout(timer)
    socket.destroy()
  }
  count(attack, 1, sent, failed)
}

/**
 * The agent refuses more than 5 new connections a second from one host (that limit is under test too, by
 * the crowd): the other attacks are paced below it so that they reach the layers they aim at.
 */
const nextConnectionAt = new Map<string, number>()
async function pace(t: Target, gapMs = 300): Promise<void> {
  const at = Math.max(Date.now(), nextConnectionAt.get(t.host) ?? 0)
  nextConnectionAt.set(t.host, at + gapMs)
  await new Promise((resolve) => setTimeout(resolve, at - Date.now()))
}

const write = async (socket: Socket, data: Uint8Array): Promise<void> => {
  if (socket.destroyed) return
  if (!socket.write(data))
    await new Promise<void>((resolve) => {
      socket.once('drain', resolve)
      socket.once('close', resolve)
    })
}

const varint = (n: number): number[] => {
  const out: number[] = []
  while (n >= 0x80) {
    out.push((n & 0x7f) | 0x80)
    n = Math.floor(n / 128)
  }
  out.push(n)
  return out
}
const multistreamLine = (text: string): Uint8Array => {
  const body = new TextEncoder().encode(`${text}\n`)
  return Uint8Array.from([...varint(body.length), ...body])
}

/** After the pnet nonce exchange (keyed targets), a function that encrypts what we send. */
async function pnetHandshake(socket: Socket, read: () => Promise<Buffer>, key: Uint8Array): Promise<(data: Uint8Array) => Uint8Array> {
  const nonce = randomBytes(24)
  await write(socket, nonce)
  let got = Buffer.alloc(0)
  while (got.length < 24) got = Buffer.concat([got, await read()])
  const out = new XSalsa20Stream(decodeSwarmKey(key), nonce)
  return (data) => out.update(data)
}

async function raw(t: Target): Promise<void> {
  await pace(t)
  await socketAttack('raw', t.host, t.p2pPort, 3000, async (send, _read, socket) => {
    for (let i = 0; i < 4 && !socket.destroyed; i++) await send(randomBytes(sizeUpTo(64 * 1024)))
  })
}

async function nonceThenGarbage(t: Target): Promise<void> {
  await pace(t)
  await socketAttack('nonce', t.host, t.p2pPort, 3000, async (send) => {
    await send(Uint8Array.from([...randomBytes(24), ...randomBytes(sizeUpTo(256 * 1024))]))
  })
}

async function behindKey(t: Target, attack: string, key: Uint8Array | undefined, payload: () => Uint8Array[]): Promise<void> {
  await pace(t)
  await socketAttack(attack, t.host, t.p2pPort, 5000, async (send, read, socket) => {
    const seal = key !== undefined ? await pnetHandshake(socket, read, key) : (d: Uint8Array) => d
    for (const part of payload()) await send(seal(part))
    // give the agent a moment to choke on it
    await Promise.race([read().catch(() => undefined), new Promise((resolve) => setTimeout(resolve, 200))])
  })
}

async function crowd(t: Target): Promise<void> {
  await pace(t, 2000)
  const sockets = Array.from({ length: 64 }, () => {
    const s = connect({ host: t.host, port: t.p2pPort })
    s.on('error', () => {})
    return s
  })
  await new Promise((resolve) => setTimeout(resolve, 1500))
  for (const s of sockets) s.destroy()
  count('crowd', sockets.length, 0)
}

async function rpc(t: Target): Promise<void> {
  if (t.rpcPort === undefined) return
  await socketAttack('rpc', t.host, t.rpcPort, 2000, async (send) => {
    await send(randomBytes(sizeUpTo(16 * 1024)))
  })
}

/** Noise, but every outbound byte after the handshake may be mutated: yamux and everything in it. */
function mutatingNoise(): (components: Parameters<ReturnType<typeof noise>>[0]) => ConnectionEncrypter {
  return (components) => {
    const inner = noise()(components)
    const mutate = (connection: MessageStream): void => {
      const send = connection.send.bind(connection)
      let sends = 0
      connection.send = (data) => {
        const bytes = Uint8Array.from(data instanceof Uint8Array ? data : data.subarray())
        // the first sends (muxer and identify negotiation) pass, so that later frames reach yamux's parser
        if (++sends > 6 && rand() < 0.25) {
          const flips = 1 + Math.floor(rand() * 8)
          for (let i = 0; i < flips; i++) {
            const at = Math.floor(rand() * bytes.length)
            bytes[at] = (bytes[at] ?? 0) ^ (1 << Math.floor(rand() * 8))
          }
          // sometimes a random yamux header: type, flags, stream id and a length of up to 4 GiB
          if (rand() < 0.3 && bytes.length >= 12) bytes.set(randomBytes(10), 2)
        }
        return send(bytes)
      }
    }
    return {
      protocol: inner.protocol,
      secureInbound: async (connection, options) => {
        const secured = await inner.secureInbound(connection, options)
        mutate(secured.connection)
        return secured
      },
      secureOutbound: async (connection, options) => {
        const secured = await inner.secureOutbound(connection, options)
        mutate(secured.connection)
        return secured
      }
    }
  }
}

async function libp2pNode(key: Uint8Array | undefined, encrypter: ReturnType<typeof noise> | ReturnType<typeof mutatingNoise>) {
  return await createLibp2p({
    privateKey: await generateKeyPair('Ed25519'),
    addresses: { listen: [] },
    transports: [tcp()],
    ...(key !== undefined ? { connectionProtector: privateNetwork({ psk: key }) } : {}),
    connectionEncrypters: [encrypter as ReturnType<typeof noise>],
    streamMuxers: [yamux()],
    connectionMonitor: { enabled: false },
    services: {
      identify: identify(),
      pubsub: gossipsub({
        allowPublishToZeroTopicPeers: true,
        maxOutboundBufferSize: 256 * 1024 * 1024,
        maxInboundDataLength: 8 * 1024 * 1024
      })
    }
  })
}

const address = (t: Target): ReturnType<typeof multiaddr> => multiaddr(`/ip4/${t.host}/tcp/${t.p2pPort}/p2p/${t.peerId}`)

async function mutated(t: Target, key: Uint8Array | undefined): Promise<void> {
  await pace(t)
  const node = await libp2pNode(key, mutatingNoise())
  let bytes = 0
  try {
    const cluster = t.cluster ?? 'default'
    node.services.pubsub.subscribe(announceTopic(cluster))
    const connection = await node.dial(address(t), { signal: AbortSignal.timeout(5000) })
    for (let i = 0; i < 20 && connection.status === 'open'; i++) {
      const protocol =
        [
          stateProtocol(cluster),
          helloProtocol(cluster),
          heartbeatProtocol(cluster),
          introductionsProtocol(cluster),
          `/sollol/${cluster}/tunnel/openai/1.0.0`
        ][i % 5] ?? ''
      try {
        const stream = await connection.newStream(protocol, { signal: AbortSignal.timeout(1000) })
        const data = randomBytes(sizeUpTo(32 * 1024))
        stream.send(data)
        bytes += data.length
        await stream.close({ signal: AbortSignal.timeout(500) }).catch(() => {})
      } catch {}
      const gossip = randomBytes(sizeUpTo(8 * 1024))
      await node.services.pubsub.publish(announceTopic(cluster), gossip).then(
        () => (bytes += gossip.length),
        () => {}
      )
    }
    count('mutated', 1, bytes)
  } catch {
    count('mutated', 1, bytes, true)
  } finally {
    await node.stop()
  }
}

async function oversized(t: Target, key: Uint8Array | undefined): Promise<void> {
  await pace(t)
  const node = await libp2pNode(key, noise())
  let bytes = 0
  try {
    const cluster = t.cluster ?? 'default'
    const topic = announceTopic(cluster)
    node.services.pubsub.subscribe(topic)
    await node.dial(address(t), { signal: AbortSignal.timeout(5000) })
    const until = Date.now() + 3000
    while (Date.now() < until && !node.services.pubsub.getSubscribers(topic).some((p) => p.toString() === t.peerId))
      await new Promise((resolve) => setTimeout(resolve, 50))
    for (let i = 0; i < 3; i++) {
      const data = randomBytes((1 + Math.floor(rand() * 4)) * 1024 * 1024)
      await node.services.pubsub.publish(topic, data).catch(() => {})
      bytes += data.length
    }
    for (const protocol of [stateProtocol(cluster), helloProtocol(cluster), heartbeatProtocol(cluster), introductionsProtocol(cluster)]) {
      try {
        const stream = await node.dialProtocol(peerIdFromString(t.peerId), protocol, { signal: AbortSignal.timeout(2000) })
        // a length prefix that claims 1 GiB, then 1 MiB of it
        const data = Uint8Array.from([...varint(2 ** 30), ...randomBytes(1024 * 1024)])
        stream.send(data)
        bytes += data.length
        await stream.close({ signal: AbortSignal.timeout(1000) }).catch(() => {})
      } catch {}
    }
    count('oversized', 1, bytes)
  } catch {
    count('oversized', 1, bytes, true)
  } finally {
    await node.stop()
  }
}

const keys = new Map<string, Uint8Array>()
for (const t of spec.targets) if (t.keyFile !== undefined) keys.set(t.keyFile, await readClusterKey(t.keyFile))

/**
 * A member that stays connected for the whole run (one connection per target) and keeps sending oversized
 * gossip (1-4 MiB, above the announcement limit) and oversized protocol messages, paced at a few a second.
 */
async function flood(t: Target, key: Uint8Array | undefined, until: number): Promise<void> {
  const node = await libp2pNode(key, noise())
  const stats = { messages: 0, bytes: 0, redials: 0 }
  try {
    const cluster = t.cluster ?? 'default'
    const topic = announceTopic(cluster)
    node.services.pubsub.subscribe(topic)
    while (Date.now() < until) {
      if (node.getConnections(peerIdFromString(t.peerId)).length === 0) {
        stats.redials++
        await node.dial(address(t), { signal: AbortSignal.timeout(5000) }).catch(() => {})
        await new Promise((resolve) => setTimeout(resolve, 1000))
        continue
      }
      const data = randomBytes((1 + Math.floor(rand() * 4)) * 1024 * 1024)
      await node.services.pubsub.publish(topic, data).then(
        () => {
          stats.messages++
          stats.bytes += data.length
        },
        () => {}
      )
      try {
        const stream = await node.dialProtocol(peerIdFromString(t.peerId), rand() < 0.5 ? stateProtocol(cluster) : helloProtocol(cluster), {
          signal: AbortSignal.timeout(2000)
        })
        const claim = Uint8Array.from([...varint(2 ** 30), ...randomBytes(256 * 1024)])
        stream.send(claim)
        stats.messages++
        stats.bytes += claim.length
        await stream.close({ signal: AbortSignal.timeout(1000) }).catch(() => {})
      } catch {}
      await new Promise((resolve) => setTimeout(resolve, 300))
    }
  } finally {
    await node.stop()
  }
  const s = (summary.flood ??= { runs: 0, connections: 0, bytes: 0, errors: 0 })
  s.runs++
  s.connections += 1 + stats.redials
  s.bytes += stats.bytes
  floodMessages += stats.messages
}
let floodMessages = 0

const started = Date.now()
const floods = Promise.all(
  spec.targets.map(async (t) => await flood(t, t.keyFile !== undefined ? keys.get(t.keyFile) : undefined, started + spec.durationMs))
)
let rounds = 0
while (Date.now() - started < spec.durationMs) {
  rounds++
  await Promise.all(
    spec.targets.map(async (t) => {
      const key = t.keyFile !== undefined ? keys.get(t.keyFile) : undefined
      await Promise.all([raw(t), nonceThenGarbage(t), rpc(t)])
      if (key !== undefined) await behindKey(t, 'pnetGarbage', key, () => [randomBytes(sizeUpTo(128 * 1024))])
      await behindKey(t, 'noiseGarbage', key, () => [
        multistreamLine('/multistream/1.0.0'),
        multistreamLine('/noise'),
        // Noise messages are length-prefixed (2 bytes): random ones, and ones claiming 64 KiB
        Uint8Array.from([0xff, 0xff, ...randomBytes(sizeUpTo(64 * 1024))]),
        randomBytes(sizeUpTo(16 * 1024))
      ])
      await mutated(t, key)
      if (rounds % 3 === 1) await oversized(t, key)
      if (rounds % 5 === 1) await crowd(t)
    })
  )
}
await floods
const totals = Object.values(summary).reduce((a, s) => ({ connections: a.connections + s.connections, bytes: a.bytes + s.bytes }), {
  connections: 0,
  bytes: 0
})
console.log(JSON.stringify({ rounds, durationMs: Date.now() - started, ...totals, floodMessages, attacks: summary }))
process.exit(0)
