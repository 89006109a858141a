import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { MultiaddrConnection } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { CoalescingConnection } from './coalescing-connection.js'

/** What the socket below would be handed: each `send` is one write (one segment for small ones). */
class FakeRaw extends EventTarget {
  readonly writes: Uint8Array[] = []
  readonly remoteAddr = multiaddr('/ip4/10.0.0.2/tcp/7490')
  readonly direction = 'outbound'
  readonly log = Object.assign(() => {}, { error: () => {}, trace: () => {}, enabled: false, newScope: () => this.log })
  full = false
  closed = false
  send(bytes: Uint8Array): boolean {
    this.writes.push(Uint8Array.from(bytes)) // a copy, as plain bytes (Buffer or not)
    return !this.full
  }
  async close(): Promise<void> {
    this.closed = true
    return await Promise.resolve()
  }
  abort(): void {}
  pause(): void {}
  resume(): void {}
}

const turn = async (): Promise<void> => await new Promise((resolve) => setImmediate(resolve))
const bytes = (...values: number[]): Uint8Array => Uint8Array.from(values)

function connect(init: Partial<ConstructorParameters<typeof CoalescingConnection>[0]> = {}): { raw: FakeRaw; conn: CoalescingConnection } {
  const raw = new FakeRaw()
  return { raw, conn: new CoalescingConnection({ raw: raw as unknown as MultiaddrConnection, ...init }) }
}

test('the writes of one turn reach the socket as one write, in order', async () => {
  const { raw, conn } = connect()
  conn.send(bytes(0, 1)) // Noise's length...
  conn.send(bytes(2, 3, 4)) // ...its ciphertext...
  conn.send(bytes(5)) // ...and a window update written in the same turn
  assert.equal(raw.writes.length, 0, 'nothing is written before the turn ends')
  await turn()
  assert.deepEqual(raw.writes, [bytes(0, 1, 2, 3, 4, 5)])
  conn.send(bytes(6))
  await turn()
  assert.deepEqual(raw.writes.at(-1), bytes(6), 'a later turn is its own write')
})

test('a large write goes out at once, after what was waiting', () => {
  const { raw, conn } = connect()
  conn.send(bytes(9))
  const large = new Uint8Array(64 * 1024).fill(7)
  conn.send(large)
  assert.equal(raw.writes.length, 1)
  assert.equal(raw.writes[0]!.byteLength, large.byteLength + 1)
  assert.equal(raw.writes[0]![0], 9)
})

test('a full socket holds the streams above until it drains', async () => {
  const { raw, conn } = connect()
  raw.full = true
  assert.equal(conn.send(bytes(1)), true, 'the socket is not known to be full before the write')
  await turn()
  assert.equal(conn.send(bytes(2)), false, 'after a write the socket refused, the writer is told to wait')
  raw.full = false
  const drained = new Promise((resolve) => conn.addEventListener('drain', resolve, { once: true }))
  raw.dispatchEvent(new Event('drain'))
  await drained
  await turn()
  assert.deepEqual(raw.writes, [bytes(1), bytes(2)], 'the waiting bytes went out after the drain')
  assert.equal(conn.send(bytes(3)), true)
})

test('each direction goes through its transform in order; closing sends what is waiting first', async () => {
  // a stream cipher stand-in: XOR with a running counter, so order and completeness both matter
  const counter = (): ((b: Uint8Array) => Uint8Array) => {
    let i = 0
    return (b) => b.map((x) => x ^ (i++ % 256))
  }
  const { raw, conn } = connect({ outbound: counter(), inbound: counter() })
  const received: number[] = []
  conn.addEventListener('message', (evt) => {
    const data = evt.data
    for (const chunk of data instanceof Uint8Array ? [data] : data) received.push(...chunk)
  })
  conn.send(bytes(10, 10))
  conn.send(bytes(10))
  await turn()
  assert.deepEqual(raw.writes, [bytes(10, 11, 8)])
  const incoming = new Event('message') as Event & { data: Uint8Array }
  incoming.data = bytes(10, 11, 8)
  raw.dispatchEvent(incoming)
  assert.deepEqual(received, [10, 10, 10])
  conn.send(bytes(0))
  await conn.close()
  assert.deepEqual(raw.writes.at(-1), bytes(3), 'the byte waiting at close was written, through the cipher')
  assert.equal(raw.closed, true)
})
