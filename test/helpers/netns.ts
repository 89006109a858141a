/**
 * Test hosts in Linux network namespaces (needs root): a bridge in a hub namespace and one namespace
 * per host with a veth `eth0`, its own address on 10.213.0.0/24, `lo` up and a 224.0.0.0/4 route so
 * mDNS works. Nothing touches the machine's own interfaces: every link is created inside the hub
 * namespace, so all traffic stays on the bridge. Names carry the creating pid, so a later run removes
 * what a killed run left behind.
 */
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { execa, type Options, type ResultPromise } from 'execa'

const PREFIX = 'sol'
const SUBNET = '10.213.0'

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] })
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** Processes running in a test host's namespace with this command name (e.g. llama-server). */
export function pidsOf(host: { readonly name: string }, command: string): number[] {
  const pids = execFileSync('ip', ['netns', 'pids', host.name], { encoding: 'utf8' })
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map(Number)
  return pids.filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === command
    } catch {
      return false
    }
  })
}

function deleteNamespace(name: string): void {
  // Kill whatever still runs inside (agents, rpc-servers), then remove it with its links.
  try {
    const pids = execFileSync('ip', ['netns', 'pids', name], { encoding: 'utf8' })
      .split('\n')
      .filter((p) => p.trim() !== '')
    for (const pid of pids) {
      try {
        process.kill(Number(pid), 'SIGKILL')
      } catch {}
    }
  } catch {}
  try {
    ip('netns', 'delete', name)
  } catch {}
}

/** Removes namespaces of earlier runs whose process is gone (a killed run cannot clean up itself). */
export function removeLeftovers(): void {
  let list = ''
  try {
    list = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
  } catch {
    return
  }
  for (const line of list.split('\n')) {
    const name = line.split(' ')[0] ?? ''
    const match = new RegExp(`^${PREFIX}(\\d+)-`).exec(name)
    if (match !== null && !pidAlive(Number(match[1]))) deleteNamespace(name)
  }
}

export interface TestHost {
  readonly name: string
  readonly address: string
  /** Runs a command inside the host's namespace. */
  run: (file: string, args: readonly string[], options?: Options) => ResultPromise
}

export interface HostSpec {
  /** false: no route to 224.0.0.0/4, as on a host where mDNS cannot send. */
  readonly multicastRoute?: boolean
}

let counter = 0

export class TestNetwork {
  readonly hosts: TestHost[] = []
  private readonly namespaces: string[] = []
  private readonly hub: string

  private constructor(private readonly id: string) {
    this.hub = `${id}-hub`
  }

  static create(specs: readonly HostSpec[]): TestNetwork {
    if (process.getuid?.() !== 0) throw new Error('test hosts need root (network namespaces); CI runs as root')
    removeLeftovers()
    const network = new TestNetwork(`${PREFIX}${process.pid}n${counter++}`)
    process.once('exit', () => network.destroy())
    try {
      network.build(specs)
    } catch (err) {
      network.destroy()
      throw err
    }
    return network
  }

  private build(specs: readonly HostSpec[]): void {
    ip('netns', 'add', this.hub)
    this.namespaces.push(this.hub)
    ip('-n', this.hub, 'link', 'add', 'br0', 'type', 'bridge')
    ip('-n', this.hub, 'link', 'set', 'br0', 'up')
    specs.forEach((spec, i) => {
      const name = `${this.id}-h${i + 1}`
      const address = `${SUBNET}.${i + 2}`
      ip('netns', 'add', name)
      this.namespaces.push(name)
      ip('-n', this.hub, 'link', 'add', `v${i + 1}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', name)
      ip('-n', this.hub, 'link', 'set', `v${i + 1}`, 'master', 'br0', 'up')
      ip('-n', name, 'addr', 'add', `${address}/24`, 'dev', 'eth0')
      ip('-n', name, 'link', 'set', 'eth0', 'up')
      ip('-n', name, 'link', 'set', 'lo', 'up')
      if (spec.multicastRoute !== false) ip('-n', name, 'route', 'add', '224.0.0.0/4', 'dev', 'eth0')
      this.hosts.push({
        name,
        address,
        run: (file, args, options) => execa('ip', ['netns', 'exec', name, file, ...args], { reject: false, ...options }) as ResultPromise
      })
    })
  }

  /** The i-th host (0-based); throws when there is none, so tests need no casts. */
  host(index: number): TestHost {
    const host = this.hosts[index]
    if (host === undefined) throw new Error(`no test host ${index}: the network has ${this.hosts.length}`)
    return host
  }

  /** Removes every namespace (and so every link and every process left inside). Idempotent. */
  destroy(): void {
    for (const name of this.namespaces.splice(0).reverse()) deleteNamespace(name)
  }
}
