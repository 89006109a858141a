/**
 * llama.cpp's own rule for which device gets which layer, reproduced exactly (src/llama-model.cpp,
 * load_tensors): with `-ngl n` the last n of the n_layer+1 "layers" (the repeating ones plus the
 * output) are offloaded; devices take contiguous runs by the cumulative, normalised `--tensor-split`,
 * in float32 as llama.cpp computes it. Pure.
 */

/** Device index per layer; `layerCount` is the output layer. 'cpu' = the host running llama-server. */
export type LayerDevice = number | 'cpu'

export function expectedLayerDevices(tensorSplit: readonly number[], layerCount: number, gpuLayers = layerCount + 1): LayerDevice[] {
  const f = Math.fround
  const cumulative: number[] = []
  let sum = f(0)
  for (const share of tensorSplit) {
    sum = f(sum + f(share))
    cumulative.push(sum)
  }
  const splits = cumulative.map((c) => f(c / sum))
  const gpuStart = Math.max(layerCount + 1 - gpuLayers, 0)
  const active = tensorSplit.length === 0 ? 0 : Math.min(gpuLayers, layerCount + 1)
  const devices: LayerDevice[] = []
  for (let il = 0; il <= layerCount; il++) {
    if (il < gpuStart || il - gpuStart >= active) {
      devices.push('cpu')
      continue
    }
    const position = f((il - gpuStart) / active)
    // std::upper_bound: the first split point strictly greater than the position
    let device = splits.findIndex((s) => s > position)
    if (device === -1) device = splits.length
    devices.push(device)
  }
  return devices
}

/** Number of repeating layers each device gets (output layer not counted). */
export function layersPerDevice(devices: readonly LayerDevice[], deviceCount: number): { perDevice: number[]; cpu: number } {
  const perDevice = new Array<number>(deviceCount).fill(0)
  let cpu = 0
  devices.slice(0, -1).forEach((d) => {
    if (d === 'cpu') cpu++
    else perDevice[d] = (perDevice[d] ?? 0) + 1
  })
  return { perDevice, cpu }
}

/**
 * A `--tensor-split` that gives device i exactly `layerCounts[i]` repeating layers, device `outputIndex`
 * (default: the last) also taking the output layer (all layers offloaded). Devices after the output one
 * must hold no layers: they get a zero share (an rpc-server's devices are listed in its own order, and its
 * trailing ones may be left out of a plan). Each boundary sits half a layer before the first layer of the
 * next device, so llama.cpp's float32 rounding cannot move it.
 */
export function tensorSplitForLayerCounts(layerCounts: readonly number[], outputIndex = layerCounts.length - 1): number[] {
  if (layerCounts.slice(outputIndex + 1).some((c) => c > 0)) {
    throw new Error(`tensorSplitForLayerCounts: devices after the output device ${outputIndex} hold layers (${layerCounts.join(',')})`)
  }
  const positions = layerCounts.reduce((a, b) => a + b, 0) + 1 // + the output layer
  const split: number[] = []
  let cumulative = 0
  let previousBoundary = 0
  layerCounts.forEach((count, i) => {
    cumulative += count
    const boundary = i >= outputIndex ? positions : Math.max(0, cumulative - 0.5)
    split.push(boundary - previousBoundary)
    previousBoundary = boundary
  })
  return split
}
