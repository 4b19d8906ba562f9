#!/usr/bin/env bash
# Next-ViT S/B/L against torchvision's ResNet-50/101 and timm's Next-ViT-S on
# one GPU: latency in fp32 / fp16 / bf16, eager and torch.compile, and
# training throughput (mmnextvit/analysis/gpu_benchmark.py has the method).
# Made for a GPU machine without OpenMMLab packages or a package registry:
#
#   # here (PyPI reachable): mmengine, mmcv without compiled ops (mmcv-lite)
#   # and their missing dependencies as wheels, about 2 MB
#   bash tools/analysis_tools/gpu_benchmark.sh --prepare .gpu_wheels
#   # there, with the repository and .gpu_wheels copied over (at most 6 min)
#   OUT=results bash tools/analysis_tools/gpu_benchmark.sh --wheels .gpu_wheels
#   # here: the same steps on the CPU at a tiny size, without mmcv's ops
#   bash tools/analysis_tools/gpu_benchmark.sh --wheels .gpu_wheels --cpu-rehearsal
#
# --wheels DIR installs DIR's wheels into a temporary folder put first on
# PYTHONPATH (the machine's own packages are not touched); without it the
# packages must be importable already. Further arguments go to
# tools/analysis_tools/gpu_benchmark.py (--models, --sizes, --budget, ...).
# Results go to $OUT (default work_dirs/gpu_benchmark): gpu_benchmark.txt,
# .json, .png and gpu_benchmark.log (card, driver, torch, CUDA, date).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
if [ -n "${PYTHON:-}" ]; then PY="$PYTHON"
elif [ -x "$ROOT/.venv/bin/python" ]; then PY="$ROOT/.venv/bin/python"
else PY=python3; fi
REQUIREMENTS="$ROOT/requirements/gpu_benchmark.txt"

die() { printf '[gpu_benchmark] error: %s\n' "$*" >&2; exit 2; }

if [ "${1:-}" = --prepare ]; then
  DEST="${2:-}"
  [ -n "$DEST" ] || die "--prepare needs a folder, e.g. --prepare .gpu_wheels"
  # Staged, then moved: a failed download leaves no half-filled folder.
  STAGE="$(mktemp -d)"
  trap 'rm -rf "$STAGE"' EXIT
  # Pure-Python wheels, taken as for the GPU machine's Python 3.12.
  if ! "$PY" -m pip download -q --disable-pip-version-check --no-deps \
      --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux2014_x86_64 -d "$STAGE" -r "$REQUIREMENTS" \
      2> >(grep -v "^WARNING: Location" >&2); then
    die "could not download the wheels of $REQUIREMENTS (is PyPI reachable?)"
  fi
  rm -rf "$DEST"
  mkdir -p "$(dirname "$DEST")"
  mv "$STAGE" "$DEST"
  trap - EXIT
  printf '[gpu_benchmark] %s: %s (%s)\n' "$DEST" \
    "$(cd "$DEST" && ls | tr '\n' ' ')" "$(du -sh "$DEST" | cut -f1)"
  exit 0
fi

if [ "${1:-}" = --wheels ]; then
  WHEELS="${2:-}"
  shift 2 || die "--wheels needs the folder --prepare filled"
  ls "$WHEELS"/*.whl >/dev/null 2>&1 \
    || die "no wheels in '$WHEELS'; make them with --prepare $WHEELS"
  SITE="$(mktemp -d)"
  trap 'rm -rf "$SITE"' EXIT
  "$PY" -m pip install -q --disable-pip-version-check --no-index --no-deps \
    --no-compile --target "$SITE" "$WHEELS"/*.whl
  export PYTHONPATH="$SITE:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
fi

OUT="${OUT:-work_dirs/gpu_benchmark}"
mkdir -p "$OUT"
LOG="$OUT/gpu_benchmark.log"
{
  echo "date $(date -u -Iseconds)"
  "$PY" -c 'import platform, torch; print("python", platform.python_version(), "| torch", torch.__version__, "| CUDA", torch.version.cuda, "| cuDNN", torch.backends.cudnn.version())'
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv
  fi
} 2>&1 | tee "$LOG"
# Both streams into the log; errors stay on stderr (one line for bad input).
STATUS=0
PYTHONUNBUFFERED=1 "$PY" tools/analysis_tools/gpu_benchmark.py \
  --out-dir "$OUT" "$@" > >(tee -a "$LOG") 2> >(tee -a "$LOG" >&2) \
  || STATUS=$?
# Let the copies to the log finish first.
if [ -n "${!:-}" ]; then wait "$!" 2>/dev/null || true; fi
exit "$STATUS"
