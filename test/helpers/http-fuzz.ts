/**
 * Malformed HTTP against an agent's local API (run inside its test host):
 *   node http-fuzz.js <port> <count>
 * Prints how many requests got an answer and how many were cut.
 */
import { connect } from 'node:net'

const [portText, countText] = process.argv.slice(2)
const port = Number(portText)
const count = Number(countText)
const requests = [
  'GET /v1/cluster HTTP/1.1\r\nHost: x\r\n\r\n',
  'DELETE /v1/cluster HTTP/1.1\r\nHost: x\r\n\r\n',
  'POST /v1/cluster HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n' + 'A'.repeat(100_000),
  `GET /${'a'.repeat(20_000)} HTTP/1.1\r\nHost: x\r\n\r\n`,
  `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'b'.repeat(20_000)}\r\n\r\n`,
  'NOT HTTP AT ALL\r\n\r\n',
  '\u0000\u0001\u0002\u0003\r\n\r\n',
  'GET /v1/plan?x=%ZZ HTTP/1.1\r\nHost: x\r\n\r\n',
  'GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n'
]
let answered = 0
let cut = 0
for (let i = 0; i < count; i++) {
  const request = requests[i % requests.length] ?? ''
  const reply = await new Promise<string>((resolve) => {
    const socket = connect({ host: '127.0.0.1', port })
    let data = ''
    socket.setTimeout(3000, () => socket.destroy())
    socket.on('data', (chunk) => {
      data += chunk.toString('latin1')
    })
    socket.on('close', () => resolve(data))
    socket.on('error', () => resolve(data))
    socket.on('connect', () => socket.end(request))
  })
  if (reply.startsWith('HTTP/1.1')) answered++
  else cut++
}
console.log(JSON.stringify({ answered, cut }))
