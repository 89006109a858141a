#!/usr/bin/env bash
# A GPU beside the CPU in one rpc-server, on a machine with an NVIDIA GPU (after `npm ci && npx tsc -b`):
#   bash scripts/gpu-check.sh [--device CUDA0] [--layers 32] [--embd 1024] [--gpu-share 0.5]
# Sets up the prebuilt CUDA backend, plans a generated model across the GPU and the CPU with per-device
# budgets, serves it, and prints decode tok/s against CPU-only and against llama.cpp's default split
# (scripts/gpu-check.mjs). At most 8 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
exec timeout 480 node scripts/gpu-check.mjs "$@"
