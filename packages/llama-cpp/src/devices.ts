/**
 * The ggml devices an rpc-server can serve, as llama.cpp names them (`CUDA0`, `Vulkan0`, `CPU`...).
 *
 * The RPC protocol gives a server's device count and memory but not their names, and the server's banner
 * is block-buffered when its output is a pipe. So the binary is asked directly: `ggml-rpc-server -d X` with a
 * device that does not exist prints every device it has ("  NAME: DESCRIPTION (TOTAL MiB, FREE MiB free)",
 * on stdout) and exits. That is the ggml registry's order, the same backends and environment the real
 * server will load (`GGML_VK_VISIBLE_DEVICES`, loadable backend modules beside the binary).
 */
import { execa } from 'execa'

const MIB = 2 ** 20

/** The kind of device, from ggml's name for it. */
export type DeviceBackend = 'cpu' | 'cuda' | 'rocm' | 'metal' | 'vulkan' | 'other'

export interface LocalDevice {
  /** llama.cpp's name: what `--device` takes. */
  readonly name: string
  readonly description: string
  readonly backend: DeviceBackend
  readonly memoryTotal: number
  readonly memoryFree: number
}

const LINE = /^\s+(\S+): (.*) \((\d+) MiB, (\d+) MiB free\)\s*$/

export function backendOf(name: string): DeviceBackend {
  if (/^CPU$/i.test(name)) return 'cpu'
  if (/^CUDA\d+$/i.test(name)) return 'cuda'
  if (/^(ROCm|HIP)\d+$/i.test(name)) return 'rocm'
  if (/^(MTL|Metal)\d*$/i.test(name)) return 'metal'
  if (/^Vulkan\d+$/i.test(name)) return 'vulkan'
  return 'other'
}

/** The device list a ggml tool prints (rpc-server's "available devices", llama-server's --list-devices). Pure. */
export function parseDeviceList(text: string): LocalDevice[] {
  return text.split('\n').flatMap((line) => {
    const m = LINE.exec(line)
    if (m === null) return []
    const [, name = '', description = '', total = '0', free = '0'] = m
    return [{ name, description, backend: backendOf(name), memoryTotal: Number(total) * MIB, memoryFree: Number(free) * MIB }]
  })
}

/** A device name no backend has: asking for it makes the rpc-server list the ones it has. */
const NO_SUCH_DEVICE = 'sollol-list-devices'

/** The devices `ggml-rpc-server` (in `env`) can serve. Empty when it prints none (an old binary). */
export async function listRpcServerDevices(binary: string, env?: NodeJS.ProcessEnv): Promise<LocalDevice[]> {
  const result = await execa(binary, ['--device', NO_SUCH_DEVICE], {
    reject: false,
    timeout: 60_000,
    env: { ...process.env, ...env },
    extendEnv: false,
    stdin: 'ignore'
  })
  return parseDeviceList(result.stdout)
}

/**
 * The devices an agent's rpc-server serves when none are named: every accelerator, then the CPU, so a GPU
 * box offers its card for speed and its RAM for what does not fit (the rpc-server alone would serve the
 * accelerators only). Undefined: the server's own default (only a CPU here). Pure.
 */
export function defaultServedDevices(devices: readonly LocalDevice[]): string[] | undefined {
  const accelerators = devices.filter((d) => d.backend !== 'cpu')
  if (accelerators.length === 0) return undefined
  const cpu = devices.find((d) => d.backend === 'cpu')
  return [...accelerators.map((d) => d.name), ...(cpu !== undefined ? [cpu.name] : [])]
}
