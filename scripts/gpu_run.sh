#!/usr/bin/env bash
# The prepared one-shot GPU run of issue 17, as the device tool calls it (docs/gpu.md):
#   run(command="bash scripts/gpu_run.sh", carry=[".gpu_carry"], timeout_s=465)
# after `python -m editgan_core.gpu_run prepare` here. Extra arguments go to the runner
# (--total, --phases, --budget PHASE=S, --resume DIR, --dry-run).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
exec python3 -m editgan_core.gpu_run run --out "${OUT:?set OUT to the folder that comes back}" "$@"
