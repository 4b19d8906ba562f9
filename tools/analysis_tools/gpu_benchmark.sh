#!/usr/bin/env bash
# GPU latency of Next-ViT S/B/L against ResNet-50/101 and Swin-T (fp32 and
# fp16, 800x1216 and 512x512, batch 1) and Mask R-CNN training-iteration
# throughput (Next-ViT-S against ResNet-50), in under five minutes on one
# GPU. Results go to $OUT (default work_dirs/gpu_benchmark): the tables as
# text, JSON and PNG, and a log with the card, driver and date.
#
#   bash tools/analysis_tools/gpu_benchmark.sh
#   OUT=/tmp/gpu REPS=20 bash tools/analysis_tools/gpu_benchmark.sh
#
# Without a GPU it says so and, with CPU_SMOKE=1, runs the same steps on the
# CPU at a tiny size and 1 round (a syntax and wiring check, not a benchmark).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PY" ] || PY=python
OUT="${OUT:-work_dirs/gpu_benchmark}"
REPS="${REPS:-30}"
WARMUP="${WARMUP:-5}"
ITERS="${ITERS:-10}"
mkdir -p "$OUT"
LOG="$OUT/gpu_benchmark.log"

log() { printf '[gpu_benchmark] %s\n' "$*" | tee -a "$LOG"; }

if "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  DEVICE=cuda
  SIZES="800x1216 512x512"
  TRAIN_SIZE=800x1216
  MATMUL=8192
else
  if [ "${CPU_SMOKE:-0}" != 1 ]; then
    echo "[gpu_benchmark] torch sees no GPU here; run it on a GPU machine" \
         "(or CPU_SMOKE=1 for a quick wiring check on the CPU)" >&2
    exit 1
  fi
  DEVICE=cpu
  SIZES="64x96"
  TRAIN_SIZE=64x96
  REPS=1 WARMUP=0 ITERS=1 MATMUL=256
fi

: >"$LOG"
log "date $(date -Iseconds)"
"$PY" - <<'PYEOF' | tee -a "$LOG"
import torch
print(f'torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN '
      f'{torch.backends.cudnn.version()}')
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f'GPU {p.name}, {p.total_memory / 2**30:.0f} GiB')
PYEOF
if [ "$DEVICE" = cuda ] && command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv \
    | tee -a "$LOG"
fi

START=$SECONDS
for PREC in fp32 fp16; do
  FLAG=""
  [ "$PREC" = fp16 ] && FLAG="--fp16"
  log "backbone latency, $PREC"
  # shellcheck disable=SC2086
  "$PY" tools/analysis_tools/benchmark.py --device "$DEVICE" $FLAG \
    --sizes $SIZES --reps "$REPS" --warmup "$WARMUP" --no-memory \
    --matmul-size "$MATMUL" --json "$OUT/backbones_$PREC.json" \
    --png "$OUT/backbones_$PREC.png" 2>&1 | grep -v -i warn | tee -a "$LOG"
  log "elapsed $((SECONDS - START)) s"
done

log "Mask R-CNN training iterations (fp32, batch 1, $TRAIN_SIZE)"
"$PY" tools/analysis_tools/train_cost.py iteration \
  configs/mask_rcnn/nextvit_s_1x.py \
  mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py \
  --size "$TRAIN_SIZE" --reps "$ITERS" --device "$DEVICE" --no-memory \
  2>&1 | grep -v -i warn | tee -a "$LOG"
log "done in $((SECONDS - START)) s; results in $OUT"
