#!/usr/bin/env bash
# Test a checkpoint on a Slurm cluster: one task per GPU, started by srun.
#
#   tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [tools/test.py ARGS ...]
#
# Environment: GPUS (total tasks, default 8), GPUS_PER_NODE (default 8; 0
# for CPU-only nodes, which then run over gloo), TASKS_PER_NODE (default
# GPUS_PER_NODE, 1 on CPU-only nodes), CPUS_PER_TASK (default 5), SRUN_ARGS
# (more srun options), PYTHON (default: python).
set -euo pipefail

if [ $# -lt 4 ]; then
  echo "usage: $0 PARTITION JOB_NAME CONFIG CHECKPOINT [tools/test.py ARGS ...]" >&2
  exit 2
fi
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
CHECKPOINT=$4
shift 4

# Checked here, before the job waits in the queue, so that a wrong path is
# one line now rather than one per task later.
if [ ! -f "$CONFIG" ]; then
  echo "error: config '$CONFIG' does not exist; pass the path of a config file, e.g. configs/mask_rcnn/nextvit_s_1x.py" >&2
  exit 2
fi
if [ ! -f "$CHECKPOINT" ]; then
  echo "error: checkpoint '$CHECKPOINT' does not exist; pass a .pth file written by tools/train.py or a released model" >&2
  exit 2
fi

GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
TASKS_PER_NODE=${TASKS_PER_NODE:-$GPUS_PER_NODE}
GRES=()
if [ "$GPUS_PER_NODE" -gt 0 ]; then
  GRES=(--gres="gpu:$GPUS_PER_NODE")
elif [ "$TASKS_PER_NODE" -eq 0 ]; then
  TASKS_PER_NODE=1
fi

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC2086  # SRUN_ARGS holds several options
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" \
exec srun -p "$PARTITION" \
  --job-name="$JOB_NAME" \
  "${GRES[@]}" \
  --ntasks="$GPUS" \
  --ntasks-per-node="$TASKS_PER_NODE" \
  --cpus-per-task="$CPUS_PER_TASK" \
  --kill-on-bad-exit=1 \
  ${SRUN_ARGS:-} \
  "${PYTHON:-python}" -u "$ROOT/tools/test.py" "$CONFIG" "$CHECKPOINT" \
  --launcher=slurm "$@"
