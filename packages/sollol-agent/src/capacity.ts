/**
 * What this machine offers: devices (GPUs from the vendors' tools when present, else what the
 * rpc-server reports), the memory budget, the models it holds. I/O at the edge of the agent.
 */
import { createHash } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import { open, stat } from 'node:fs/promises'
import { basename } from 'node:path'
import { cpus, freemem, totalmem } from 'node:os'
import { execa } from 'execa'
import type { Device, ModelRef } from '@sollol/core'
import type { DeviceBackend, LocalDevice, RpcDeviceMemory } from '@sollol/llama-cpp'
import { modelFiles } from '@sollol/gguf'

/** Default `--max-memory`: this share of the memory available at start, so the OS and other programs keep the rest. */
export const DEFAULT_MEMORY_SHARE = 0.75

export function defaultMemoryBudget(available = freemem()): number {
  return Math.floor((available * DEFAULT_MEMORY_SHARE) / 2 ** 20) * 2 ** 20
}

const MIB = 2 ** 20

/** nvidia-smi's CSV (name, total MiB, free MiB per line) to devices. Pure. */
export function parseNvidiaSmi(csv: string): Device[] {
  return csv
    .trim()
    .split('\n')
    .filter((l) => l.trim() !== '')
    .flatMap((line) => {
      const [name, total, free] = line.split(',').map((s) => s.trim())
      const t = Number(total)
      const f = Number(free)
      if (name === undefined || !Number.isFinite(t) || !Number.isFinite(f)) return []
      return [{ kind: 'cuda' as const, name, memoryTotal: t * MIB, memoryFree: f * MIB }]
    })
}

async function nvidiaDevices(): Promise<Device[]> {
  const result = await execa('nvidia-smi', ['--query-gpu=name,memory.total,memory.free', '--format=csv,noheader,nounits'], {
    reject: false,
    timeout: 5000
  })
  return result.exitCode === 0 ? parseNvidiaSmi(result.stdout) : []
}

async function rocmDevices(): Promise<Device[]> {
  const result = await execa('rocm-smi', ['--showmeminfo', 'vram', '--json'], { reject: false, timeout: 5000 })
  if (result.exitCode !== 0) return []
  try {
    const cards = JSON.parse(result.stdout) as Record<string, Record<string, string>>
    return Object.entries(cards).map(([card, info]) => {
      const total = Number(info['VRAM Total Memory (B)'] ?? 0)
      const used = Number(info['VRAM Total Used Memory (B)'] ?? 0)
      return { kind: 'rocm' as const, name: card, memoryTotal: total, memoryFree: Math.max(0, total - used) }
    })
  } catch {
    return []
  }
}

/** GPUs by vendor tools (when installed), then the CPU with the rpc-server's view of system memory. */
export async function detectDevices(rpcDevices: readonly RpcDeviceMemory[]): Promise<Device[]> {
  const gpus = [...(await nvidiaDevices().catch(() => [])), ...(await rocmDevices().catch(() => []))]
  const cpuName = cpus()[0]?.model.trim() ?? 'CPU'
  // A CPU rpc-server reports free = total = physical RAM; the OS knows better what is free.
  const cpu: Device = { kind: 'cpu', name: cpuName, memoryTotal: rpcDevices[0]?.total ?? totalmem(), memoryFree: freemem() }
  return [...gpus, cpu]
}

/** A GPU keeps this share of its memory (at least GPU_RESERVE_MIN) for its driver and other programs. */
export const GPU_RESERVE_SHARE = 0.05
export const GPU_RESERVE_MIN = 256 * MIB

/**
 * What each device of the rpc-server offers the cluster, in the server's order. The CPU: the node's budget
 * (`--max-memory`, else 75 % of free RAM). An accelerator: `--max-memory NAME=SIZE`, else its free memory
 * less a reserve (5 %, at least 256 MiB: its free memory is read after the rpc-server created its context,
 * and the planner reserves compute buffers per device itself). Pure.
 */
export function deviceBudgets(
  served: ReadonlyArray<{ readonly name: string; readonly backend: string; readonly memoryTotal: number; readonly memoryFree: number }>,
  nodeBudget: number,
  limits: Readonly<Record<string, number>> = {}
): number[] {
  return served.map((d) => {
    const given = limits[d.name]
    if (given !== undefined) return given
    if (d.backend === 'cpu') return nodeBudget
    const reserve = Math.max(GPU_RESERVE_MIN, d.memoryTotal * GPU_RESERVE_SHARE)
    return Math.max(0, Math.floor((d.memoryFree - reserve) / MIB) * MIB)
  })
}

/** llama.cpp's device kinds to the announcement's (kinds it does not know stay `cpu`-kind accelerators). */
const ANNOUNCED_KIND: Record<DeviceBackend, Device['kind']> = {
  cpu: 'cpu',
  cuda: 'cuda',
  rocm: 'rocm',
  metal: 'metal',
  vulkan: 'vulkan',
  other: 'cpu'
}

/**
 * The rpc-server's devices as announced: llama.cpp's names, the server's order, memory as the server
 * reports it per device (the CPU's free memory from the OS: the server reports all of RAM as free), and
 * the budget of each. Pure.
 */
export function announcedDevices(
  served: readonly LocalDevice[],
  memory: readonly RpcDeviceMemory[],
  budgets: readonly number[],
  freeRam: number
): Device[] {
  return served.map((d, i) => {
    const reported = memory[i]
    return {
      kind: ANNOUNCED_KIND[d.backend],
      name: d.name,
      memoryTotal: reported?.total ?? d.memoryTotal,
      memoryFree: d.backend === 'cpu' ? freeRam : (reported?.free ?? d.memoryFree),
      rpcIndex: i,
      type: d.backend === 'cpu' ? 'cpu' : d.backend === 'other' ? 'accel' : 'gpu',
      description: d.description.slice(0, 256),
      budget: budgets[i] ?? 0
    }
  })
}

/**
 * A model's content id: sha256 over its size and its first and last MiB. Reading a 70 GB file whole
 * would take minutes; these bytes hold the GGUF header (names, shapes, metadata) and the last tensors.
 */
/**
 * `name`: what the model is called (an Ollama blob's file name says nothing); default the file name. A split
 * model's id covers every shard (for a single file it is what it always was).
 */
export async function modelRef(path: string, name: string = basename(path)): Promise<ModelRef> {
  const files = (await modelFiles(path)).map((shard) => shard.path)
  const hash = createHash('sha256')
  let size = 0
  for (const each of files) {
    const bytes = (await stat(each)).size
    size += bytes
    hash.update(String(bytes))
    const file = await open(each, 'r')
    try {
      const chunk = Buffer.alloc(Math.min(MIB, bytes))
      await file.read(chunk, 0, chunk.length, 0)
      hash.update(chunk)
      if (bytes > MIB) {
        await file.read(chunk, 0, chunk.length, bytes - chunk.length)
        hash.update(chunk)
      }
    } finally {
      await file.close()
    }
  }
  return { name: name.slice(0, 256), size, id: hash.digest('hex').slice(0, 32) }
}

/** Assumed when the kernel does not say (a container without /sys): the test machines' L3. */
const DEFAULT_LAST_LEVEL_CACHE_BYTES = 32 * MIB

/**
 * The largest CPU cache of this machine (its last level, shared by the cores), from sysfs: what a
 * calibration model must outgrow to be priced like a big model (calibration-shape.ts).
 */
export function lastLevelCacheBytes(root = '/sys/devices/system/cpu/cpu0/cache'): number {
  let largest = 0
  try {
    for (const index of readdirSync(root).filter((name) => name.startsWith('index'))) {
      const text = readFileSync(`${root}/${index}/size`, 'utf8').trim() // "32768K"
      const match = /^(\d+)([KMG]?)$/i.exec(text)
      if (match === null) continue
      const unit = { '': 1, K: 1024, M: MIB, G: 1024 * MIB }[match[2]!.toUpperCase()] ?? 1
      largest = Math.max(largest, Number(match[1]) * unit)
    }
  } catch {
    // no sysfs here
  }
  return largest > 0 ? largest : DEFAULT_LAST_LEVEL_CACHE_BYTES
}
