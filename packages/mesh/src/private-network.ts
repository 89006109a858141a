/**
 * The cluster key's connection protector: libp2p's private-network (pnet) wire format, with its cipher
 * done by @noble/ciphers.
 *
 * Why not @libp2p/pnet: it decrypts every byte with `xsalsa20@1.2.0`, whose WebAssembly memory is shared by
 * the whole process but grown from each cipher instance's stale view of it; under heavy traffic on two
 * connections it throws `WebAssembly.Memory.grow(): Maximum memory size exceeded` inside a socket listener,
 * which kills the process (seen with a rogue member, and reachable by weights sent through the tunnel).
 *
 * The wire format is unchanged, so other libp2p pnet peers interoperate: each side sends a random 24-byte
 * nonce, then everything it sends is XORed with the XSalsa20 keystream of (the pre-shared key, its own nonce),
 * and everything it receives with the keystream of (the key, the other side's nonce).
 * A failure to decrypt or encrypt closes that connection, never the process.
 */
import { randomBytes } from 'node:crypto'
import { xsalsa20 } from '@noble/ciphers/salsa.js'
import type { AbortOptions, ConnectionProtector, MessageStream, MultiaddrConnection } from '@libp2p/interface'
import { byteStream } from '@libp2p/utils'
import { CoalescingConnection } from './coalescing-connection.js'
import { SWARM_KEY_FORMAT } from './cluster-key.js'

export const NONCE_LENGTH = 24
export const KEY_LENGTH = 32
const BLOCK = 64
/** The nonce exchange of a new connection must finish within this (a stranger that sends nothing is dropped). */
const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000

/**
 * One direction's XSalsa20 keystream, applied to chunks as they come. The keystream position is kept in
 * bytes; a chunk that starts inside a 64-byte block is aligned by padding in front.
 * @noble/ciphers counts blocks with 32 bits: after 256 GiB in one direction `update` throws and the
 * connection is closed (and redialled), rather than reusing keystream.
 */
export class XSalsa20Stream {
  private position = 0

  constructor(
    private readonly key: Uint8Array,
    private readonly nonce: Uint8Array
  ) {
    if (key.length !== KEY_LENGTH) throw new Error(`Expected a ${KEY_LENGTH}-byte key, got ${key.length} bytes`)
    if (nonce.length !== NONCE_LENGTH) throw new Error(`Expected a ${NONCE_LENGTH}-byte nonce, got ${nonce.length} bytes`)
  }

  update(input: Uint8Array): Uint8Array {
    const offset = this.position % BLOCK
    const counter = (this.position - offset) / BLOCK
    let output: Uint8Array
    if (offset === 0) output = xsalsa20(this.key, this.nonce, input, undefined, counter)
    else {
      const padded = new Uint8Array(offset + input.length)
      padded.set(input, offset)
      output = xsalsa20(this.key, this.nonce, padded, padded, counter).subarray(offset)
    }
    this.position += input.length
    return output
  }
}

/** The 32 key bytes of a go-ipfs style swarm key file (`/key/swarm/psk/1.0.0/`, `/base16/`, 64 hex digits). */
export function decodeSwarmKey(file: Uint8Array): Uint8Array {
  const hex = SWARM_KEY_FORMAT.exec(new TextDecoder().decode(file))?.[1]
  if (hex === undefined) throw new Error('Expected a swarm key (/key/swarm/psk/1.0.0/, /base16/, 64 hex digits), got something else')
  return Uint8Array.from(Buffer.from(hex, 'hex'))
}

export interface PrivateNetworkInit {
  /** The swarm key file's bytes. */
  readonly psk: Uint8Array
  readonly handshakeTimeoutMs?: number
}

class PrivateNetworkProtector implements ConnectionProtector {
  readonly [Symbol.toStringTag] = 'sollol-private-network'
  private readonly key: Uint8Array
  private readonly timeoutMs: number

  constructor(init: PrivateNetworkInit) {
    this.key = decodeSwarmKey(init.psk)
    this.timeoutMs = init.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS
  }

  // libp2p hands the protector the raw connection (a MultiaddrConnection) and upgrades what it returns.
  async protect(connection: MessageStream, options?: AbortOptions): Promise<MessageStream> {
    const localNonce = Uint8Array.from(randomBytes(NONCE_LENGTH))
    const signal = options?.signal ?? AbortSignal.timeout(this.timeoutMs)
    const bytes = byteStream(connection)
    const [remote] = await Promise.all([bytes.read({ bytes: NONCE_LENGTH, signal }), bytes.write(localNonce, { signal })])
    const raw = bytes.unwrap() as MultiaddrConnection
    // After the nonce exchange every byte goes through the cipher (writes of one task joined, as in an open cluster).
    const inbound = new XSalsa20Stream(this.key, remote.subarray())
    const outbound = new XSalsa20Stream(this.key, localNonce)
    return new CoalescingConnection({
      raw,
      inbound: (bytes) => inbound.update(bytes),
      outbound: (bytes) => outbound.update(bytes),
      scope: 'pnet'
    })
  }
}

/** libp2p's `connectionProtector` for a cluster key (a drop-in for @libp2p/pnet's `preSharedKey`). */
export function privateNetwork(init: PrivateNetworkInit): () => ConnectionProtector {
  return () => new PrivateNetworkProtector(init)
}
