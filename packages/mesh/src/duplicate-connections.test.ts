import { test } from 'node:test'
import assert from 'node:assert/strict'
import { surplusConnections, type OpenConnection } from './duplicate-connections.js'

const conn = (direction: OpenConnection['direction'], openedAt: number): OpenConnection => ({ direction, openedAt })

/** What survives when both ends apply the rule to the same connections (seen mirrored from the other end). */
function survivors(lowerSees: OpenConnection[]): number {
  const mirrored = lowerSees.map((c) => conn(c.direction === 'inbound' ? 'outbound' : 'inbound', c.openedAt))
  const closedByLower = new Set(surplusConnections('a', 'b', lowerSees).map((c) => lowerSees.indexOf(c)))
  const closedByHigher = new Set(surplusConnections('b', 'a', mirrored).map((c) => mirrored.indexOf(c)))
  return lowerSees.filter((_, i) => !closedByLower.has(i) && !closedByHigher.has(i)).length
}

test('a single connection is never surplus', () => {
  assert.deepEqual(surplusConnections('a', 'b', [conn('inbound', 1)]), [])
  assert.deepEqual(surplusConnections('b', 'a', [conn('outbound', 1)]), [])
})

test('simultaneous dials: the higher peer id closes its own dial, the lower one keeps its', () => {
  const mine = conn('outbound', 2)
  const theirs = conn('inbound', 1)
  assert.deepEqual(surplusConnections('b', 'a', [theirs, mine]), [mine])
  assert.deepEqual(surplusConnections('a', 'b', [conn('outbound', 1), conn('inbound', 2)]), [])
})

test('repeated dials from one side: the dialler keeps its oldest', () => {
  const oldest = conn('outbound', 1)
  const newer = conn('outbound', 5)
  assert.deepEqual(surplusConnections('a', 'b', [newer, oldest]), [newer])
  assert.deepEqual(surplusConnections('b', 'a', [newer, oldest]), [newer])
  // the receiving end closes nothing: only diallers close
  assert.deepEqual(surplusConnections('b', 'a', [conn('inbound', 1), conn('inbound', 5)]), [])
})

test('whatever the mix, both ends applying the rule leave exactly one connection', () => {
  const directions: OpenConnection['direction'][] = ['inbound', 'outbound']
  for (let n = 1; n <= 4; n++) {
    for (let mask = 0; mask < 2 ** n; mask++) {
      const seen = Array.from({ length: n }, (_, i) => conn(directions[(mask >> i) & 1]!, i))
      assert.equal(survivors(seen), 1, JSON.stringify(seen))
    }
  }
})
