import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer } from 'node:net'
import { ephemeralPortRange, freePort } from './net-util.js'

test('freePort picks below the ephemeral range, never twice, and the port can be bound', async () => {
  const { low } = ephemeralPortRange()
  const ports = []
  for (let i = 0; i < 40; i++) ports.push(await freePort())
  assert.equal(new Set(ports).size, ports.length, 'no port handed out twice')
  for (const port of ports) assert.ok(port >= 10_000 && port < low, `${port} lies outside [10000, ${low})`)
  const port = ports[0] ?? 0
  await new Promise<void>((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen({ host: '127.0.0.1', port }, () => server.close(() => resolve()))
  })
})

test('freePort skips a port that something listens on', async () => {
  // Bound here, not handed out by freePort: only the listen check can keep freePort off it.
  const server = createServer()
  let taken = 0
  for (let port = 20_000; taken === 0; port++) {
    taken = await new Promise<number>((resolve) => {
      server.once('error', () => resolve(0))
      server.listen({ host: '127.0.0.1', port }, () => resolve(port))
    })
  }
  try {
    // A "random" source that first lands on the taken port, then anywhere else.
    const span = ephemeralPortRange().low - 10_000
    const draws = [(taken - 10_000 + 0.5) / span, 0.5]
    const picked = await freePort('127.0.0.1', () => draws.shift() ?? Math.random())
    assert.notEqual(picked, taken)
  } finally {
    await new Promise((resolve) => server.close(resolve))
  }
})
