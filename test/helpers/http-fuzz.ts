/**
 * Malformed and hostile HTTP against an agent's local API (run inside its test host):
 *   node http-fuzz.js <port> <count> [--heavy]
 * Prints how many requests got an answer and how many were cut; with --heavy also what the OpenAI proxy
 * answered to a 100 MiB body (declared and chunked), how slow clients fared, and slow readers of streamed
 * completions (--heavy needs a serving cluster behind the API).
 */
import { connect } from 'node:net'
import { request } from 'node:http'

const [portText, countText, mode] = process.argv.slice(2)
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
  'GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n',
  'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 9\r\n\r\n{"messag',
  'POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\nxx',
  'POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\nnot a chunk\r\n'
]

async function exchange(text: string, timeoutMs = 3000): Promise<string> {
  return await new Promise<string>((resolve) => {
    const socket = connect({ host: '127.0.0.1', port })
    let data = ''
    socket.setTimeout(timeoutMs, () => socket.destroy())
    socket.on('data', (chunk) => {
      data += chunk.toString('latin1')
    })
    socket.on('close', () => resolve(data))
    socket.on('error', () => resolve(data))
    socket.on('connect', () => socket.end(text))
  })
}

let answered = 0
let cut = 0
for (let i = 0; i < count; i++) {
  const reply = await exchange(requests[i % requests.length] ?? '')
  if (reply.startsWith('HTTP/1.1')) answered++
  else cut++
}

/** A 100 MiB body to the OpenAI proxy, declared up front or chunked: the status it gets (or 'cut'). */
async function hugeBody(chunked: boolean): Promise<number | string> {
  return await new Promise((resolve) => {
    const size = 100 * 1024 * 1024
    const req = request({
      host: '127.0.0.1',
      port,
      method: 'POST',
      path: '/v1/chat/completions',
      headers: { 'content-type': 'application/json', ...(chunked ? {} : { 'content-length': String(size) }) }
    })
    req.on('response', (res) => {
      res.resume()
      resolve(res.statusCode ?? 0)
    })
    req.on('error', () => resolve('cut'))
    const chunk = Buffer.alloc(1024 * 1024, 0x20)
    let sent = 0
    const pump = (): void => {
      while (sent < size) {
        sent += chunk.length
        if (!req.write(chunk)) {
          req.once('drain', pump)
          return
        }
      }
      req.end()
    }
    pump()
  })
}

/** Clients that send their headers a byte at a time: the agent must cut them (headers timeout). */
async function slowClients(n: number, limitMs: number): Promise<{ cut: number; heldOpen: number }> {
  const results = await Promise.all(
    Array.from({ length: n }, async () => {
      return await new Promise<boolean>((resolve) => {
        const socket = connect({ host: '127.0.0.1', port })
        const text = 'GET /v1/cluster HTTP/1.1\r\nHost: x\r\nX-Slow: ' + 'a'.repeat(1000)
        let at = 0
        const timer = setInterval(() => {
          if (at < text.length) socket.write(text[at++] ?? '')
        }, 200)
        const giveUp = setTimeout(() => {
          clearInterval(timer)
          socket.destroy()
          resolve(false)
        }, limitMs)
        const done = (): void => {
          clearInterval(timer)
          clearTimeout(giveUp)
          resolve(true)
        }
        socket.on('close', done)
        socket.on('error', () => {})
      })
    })
  )
  return { cut: results.filter(Boolean).length, heldOpen: results.filter((r) => !r).length }
}

/**
 * Clients that ask for a streamed completion and read nothing for 5 s, then everything: the proxy holds
 * back (back-pressure, no buffering without bound) and the answer still arrives whole.
 */
async function slowReaders(n: number): Promise<{ complete: number; incomplete: number }> {
  const body = JSON.stringify({ messages: [{ role: 'user', content: 'hello' }], max_tokens: 32, stream: true })
  const results = await Promise.all(
    Array.from({ length: n }, async () => {
      return await new Promise<boolean>((resolve) => {
        const socket = connect({ host: '127.0.0.1', port })
        let data = ''
        socket.pause()
        socket.on('data', (chunk) => (data += chunk.toString('latin1')))
        socket.on('error', () => {})
        socket.on('close', () => resolve(data.includes('data: [DONE]')))
        socket.setTimeout(60_000, () => socket.destroy())
        socket.on('connect', () => {
          socket.write(
            `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
          )
          setTimeout(() => socket.resume(), 5000)
        })
      })
    })
  )
  return { complete: results.filter(Boolean).length, incomplete: results.filter((r) => !r).length }
}

const summary: Record<string, unknown> = { answered, cut }
if (mode === '--heavy') {
  summary.hugeDeclared = await hugeBody(false)
  summary.hugeChunked = await hugeBody(true)
  summary.slow = await slowClients(50, 20_000)
  summary.slowReaders = await slowReaders(4)
  summary.afterwards = (await exchange('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n')).split('\r\n')[0]
}
console.log(JSON.stringify(summary))
