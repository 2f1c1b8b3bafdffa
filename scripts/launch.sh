#!/usr/bin/env bash
# Shared launcher for the stage scripts: `scripts/launch.sh COMMAND ARGS...` runs
# `python -m fuse COMMAND ARGS...` in one process, or under torchrun when GPUS > 1 or NNODES > 1.
# It runs in the caller's directory: relative paths in ARGS are taken from there.
#   GPUS         processes per node (default 1)
#   NNODES       number of nodes (default 1); NODE_RANK, MASTER_ADDR, MASTER_PORT for multi-node runs
#   PYTHON       interpreter (default: the repository's .venv if present, else python3)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
  PYTHON=python3
  [[ -x "$repo/.venv/bin/python" ]] && PYTHON="$repo/.venv/bin/python"
fi
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"  # `-m fuse` from any directory
GPUS=${GPUS:-1}
NNODES=${NNODES:-1}
if [[ "$GPUS" -gt 1 || "$NNODES" -gt 1 ]]; then
  exec "$PYTHON" -m torch.distributed.run \
    --nproc_per_node="$GPUS" --nnodes="$NNODES" --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="${MASTER_PORT:-29500}" \
    -m fuse "$@"
fi
exec "$PYTHON" -m fuse "$@"
