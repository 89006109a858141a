/** Parsers for option values: each names what it expected and what arrived. */
import { parseClusterName, type ClusterName } from '@sollol/core'
import { InvalidArgumentError } from 'commander'

export function integer(name: string, min: number, max: number): (value: string) => number {
  return (value: string) => {
    const parsed = Number(value)
    if (!/^-?\d+$/.test(value.trim()) || !Number.isSafeInteger(parsed) || parsed < min || parsed > max) {
      throw new InvalidArgumentError(`Expected ${name} to be an integer ${min}-${max}, got \`${value}\``)
    }
    return parsed
  }
}

/** A decimal number greater than zero, e.g. `0.25`. */
export function positiveNumber(name: string): (value: string) => number {
  return (value: string) => {
    const parsed = Number(value)
    if (!/^\d+(?:\.\d+)?$/.test(value.trim()) || !(parsed > 0) || !Number.isFinite(parsed)) {
      throw new InvalidArgumentError(`Expected ${name} to be a number greater than 0, got \`${value}\``)
    }
    return parsed
  }
}

export function oneOf<T extends string>(name: string, choices: readonly T[]): (value: string) => T {
  return (value: string) => {
    if (!(choices as readonly string[]).includes(value))
      throw new InvalidArgumentError(`Expected ${name} to be one of ${choices.join(', ')}, got \`${value}\``)
    return value as T
  }
}

/** `host:port` with an IPv4 literal or a name, and a port 1-65535. */
export function endpoint(name: string): (value: string) => { host: string; port: number } {
  return (value: string) => {
    const match = /^([^:\s]+):(\d+)$/.exec(value.trim())
    const port = match !== null ? Number(match[2]) : NaN
    if (match === null || port < 1 || port > 65535)
      throw new InvalidArgumentError(`Expected ${name} to be host:port (port 1-65535), got \`${value}\``)
    return { host: match[1] ?? '', port }
  }
}

const UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1024,
  kb: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3,
  gib: 1024 ** 3,
  t: 1024 ** 4,
  tb: 1024 ** 4,
  tib: 1024 ** 4
}

/** Human byte sizes: `512M`, `8GiB`, `1.5g`, or plain bytes. Binary units (1G = 1024^3). */
export function byteSize(name: string): (value: string) => number {
  return (value: string) => {
    const match = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(value.trim())
    const unit = UNITS[(match?.[2] ?? '').toLowerCase()]
    if (match === null || unit === undefined)
      throw new InvalidArgumentError(`Expected ${name} to be a size like 512M or 8G, got \`${value}\``)
    return Math.round(Number(match[1]) * unit)
  }
}

/** `--max-memory`: a plain size (the node: its CPU), or per device as llama.cpp names them. */
export interface MemoryLimits {
  /** The node's offer (its CPU device); a plain size or `CPU=`. */
  readonly node?: number
  /** Per device other than the CPU, e.g. `{ CUDA0: 14 GiB }`. */
  readonly devices: Readonly<Record<string, number>>
}

/** `8GiB`, or `CUDA0=14GiB,CPU=8GiB` (device names as `sollol-agent status` shows them). */
export function memoryLimits(name: string): (value: string) => MemoryLimits {
  const size = byteSize(name)
  return (value: string) => {
    if (!value.includes('=')) return { node: size(value), devices: {} }
    let node: number | undefined
    const devices: Record<string, number> = {}
    for (const part of value.split(',')) {
      const match = /^\s*([A-Za-z][\w.-]{0,63})\s*=\s*(.+)$/.exec(part)
      if (match === null)
        throw new InvalidArgumentError(
          `Expected ${name} to be a size like 8GiB or DEVICE=SIZE pairs like CUDA0=14GiB,CPU=8GiB, got \`${value}\``
        )
      const [, device = '', amount = ''] = match
      const bytes = size(amount)
      if (/^cpu$/i.test(device)) node = bytes
      else devices[device] = bytes
    }
    return { ...(node !== undefined ? { node } : {}), devices }
  }
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  return `${value >= 100 || unit === 0 ? value.toFixed(0) : value.toFixed(1)} ${units[unit] ?? 'B'}`
}

export function ipv4(name: string): (value: string) => string {
  return (value: string) => {
    const parts = value.trim().split('.')
    if (parts.length !== 4 || parts.some((p) => !/^\d{1,3}$/.test(p) || Number(p) > 255))
      throw new InvalidArgumentError(`Expected ${name} to be an IPv4 address like 192.168.1.10, got \`${value}\``)
    return value.trim()
  }
}

export function cluster(value: string): ClusterName {
  try {
    return parseClusterName(value)
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message)
  }
}

/** A multiaddr like /ip4/10.0.0.5/tcp/7490[/p2p/<id>]; repeatable, so values accumulate. */
export function multiaddrOption(name: string): (value: string, previous: string[] | undefined) => string[] {
  return (value: string, previous: string[] | undefined) => {
    const values = value
      .split(',')
      .map((v) => v.trim())
      .filter((v) => v !== '')
    for (const v of values) {
      if (!/^\/(ip4|ip6|dns4|dns6|dns)\/[^/]+\/tcp\/\d+(\/p2p\/[1-9A-HJ-NP-Za-km-z]+)?$/.test(v)) {
        throw new InvalidArgumentError(`Expected ${name} to be a multiaddr like /ip4/192.168.1.10/tcp/7490, got \`${v}\``)
      }
    }
    return [...(previous ?? []), ...values]
  }
}

/**
 * A list of bare rpc-servers: SOLLOL's `rpc_backends.conf` (one `host:port` per line, `#` comments, blank
 * lines) or SynapticLlamas' JSON (`{ "rpc_backends": [{ "host": ..., "port": ... }] }`). Pure; `name` is for
 * the error, which names the line that is wrong.
 */
export function parseRpcBackends(text: string, name: string): Array<{ host: string; port: number }> {
  const trimmed = text.trim()
  if (trimmed.startsWith('{')) {
    let json: unknown
    try {
      json = JSON.parse(trimmed)
    } catch (err) {
      throw new InvalidArgumentError(`Expected ${name} to be JSON with rpc_backends, got unparsable JSON (${(err as Error).message})`)
    }
    const list = (json as { rpc_backends?: unknown }).rpc_backends
    if (!Array.isArray(list)) throw new InvalidArgumentError(`Expected ${name} to have an rpc_backends array, got ${typeof list}`)
    return list.map((b: { host?: unknown; port?: unknown }, i) => {
      if (typeof b?.host !== 'string' || typeof b.port !== 'number')
        throw new InvalidArgumentError(`Expected rpc_backends[${i}] in ${name} to be { host, port }, got \`${JSON.stringify(b)}\``)
      return endpoint(`rpc_backends[${i}] in ${name}`)(`${b.host}:${b.port}`)
    })
  }
  return text.split('\n').flatMap((raw, i) => {
    const line = raw.replace(/#.*/, '').trim()
    return line === '' ? [] : [endpoint(`line ${i + 1} of ${name}`)(line)]
  })
}
