#!/usr/bin/env bash
# Train with NUM_PROCESSES processes on this machine (or on several with
# NNODES / NODE_RANK / MASTER_ADDR), started by torchrun.
#
#   tools/dist_train.sh CONFIG NUM_PROCESSES [tools/train.py ARGS ...]
#
# With GPUs, use one process per GPU: the process group uses the config's
# backend (NCCL). Without CUDA each process trains on the CPU over gloo.
# Environment: PYTHON (default: python), PORT (default: 29500), NNODES,
# NODE_RANK, MASTER_ADDR.
set -euo pipefail

if [ $# -lt 2 ]; then
  echo "usage: $0 CONFIG NUM_PROCESSES [tools/train.py ARGS ...]" >&2
  exit 2
fi
CONFIG=$1
NPROC=$2
shift 2

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" \
exec "${PYTHON:-python}" -m torch.distributed.run \
  --nnodes="${NNODES:-1}" \
  --node_rank="${NODE_RANK:-0}" \
  --master_addr="${MASTER_ADDR:-127.0.0.1}" \
  --master_port="${PORT:-29500}" \
  --nproc_per_node="$NPROC" \
  "$ROOT/tools/train.py" "$CONFIG" --launcher pytorch "$@"
