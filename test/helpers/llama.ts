/**
 * Real llama.cpp for the end-to-end tests: the binaries `sollol-agent setup` put in place (CI runs it
 * before the tests; nothing is built here), generated models, and rpc-servers on free loopback ports.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DEFAULT_TEST_MODEL, writeTestModel, type TestModelOptions } from '@sollol/gguf'
import { FAST_TEST_TIMINGS, freePort, resolveBinaries, RpcServerSupervisor, type LlamaBinaries } from '@sollol/llama-cpp'

let binaries: Promise<LlamaBinaries> | undefined

/** The binaries users get from `sollol-agent setup`; fails (never builds) when setup has not run. */
export async function llamaBinaries(): Promise<LlamaBinaries> {
  binaries ??= resolveBinaries({ allowBuild: false })
  return await binaries
}

export interface Scratch {
  readonly dir: string
  model: (name: string, options?: Partial<TestModelOptions>) => string
  cleanup: () => void
}

export function scratch(): Scratch {
  const dir = mkdtempSync(join(tmpdir(), 'sollol-e2e-'))
  return {
    dir,
    model(name, options = {}) {
      const path = join(dir, name)
      writeTestModel(path, { ...DEFAULT_TEST_MODEL, ...options })
      return path
    },
    cleanup: () => rmSync(dir, { recursive: true, force: true })
  }
}

/** Starts `count` real rpc-servers on free loopback ports, one thread each (2-core machines). */
export async function startRpcServers(count: number): Promise<RpcServerSupervisor[]> {
  const { rpcServer } = await llamaBinaries()
  const servers: RpcServerSupervisor[] = []
  for (let i = 0; i < count; i++) {
    const server = new RpcServerSupervisor({ binary: rpcServer, port: await freePort(), threads: 1, timings: FAST_TEST_TIMINGS })
    await server.start()
    servers.push(server)
  }
  return servers
}

export async function stopAll(servers: ReadonlyArray<{ stop: () => Promise<void> }>): Promise<void> {
  await Promise.all(servers.map(async (s) => await s.stop()))
}
