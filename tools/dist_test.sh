#!/usr/bin/env bash
# Test a checkpoint with NUM_PROCESSES processes, started by torchrun.
#
#   tools/dist_test.sh CONFIG CHECKPOINT NUM_PROCESSES [tools/test.py ARGS ...]
#
# With GPUs, use one process per GPU (the config's backend, NCCL); without
# CUDA each process runs on the CPU over gloo.
# Environment: PYTHON (default: python), PORT (default: 29500), NNODES,
# NODE_RANK, MASTER_ADDR.
set -euo pipefail

if [ $# -lt 3 ]; then
  echo "usage: $0 CONFIG CHECKPOINT NUM_PROCESSES [tools/test.py ARGS ...]" >&2
  exit 2
fi
CONFIG=$1
CHECKPOINT=$2
NPROC=$3
shift 3

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" \
exec "${PYTHON:-python}" -m torch.distributed.run \
  --nnodes="${NNODES:-1}" \
  --node_rank="${NODE_RANK:-0}" \
  --master_addr="${MASTER_ADDR:-127.0.0.1}" \
  --master_port="${PORT:-29500}" \
  --nproc_per_node="$NPROC" \
  "$ROOT/tools/test.py" "$CONFIG" "$CHECKPOINT" --launcher pytorch "$@"
