#!/usr/bin/env bash
# Create or refresh a development environment (idempotent).
#
#   bash tools/setup_env.sh            # today's stack in .venv/   (make env)
#   bash tools/setup_env.sh oldest     # the users' stack in .venv-oldest/
#                                      # (make env-oldest)
#
# Today's stack: virtualenv -> pip/setuptools/wheel -> torch 2.13 (only if
# none is importable, so a pre-installed CUDA build is kept) -> mmcv build
# prerequisites -> mmcv 2.1.0 with compiled ops (reused from a wheel cache
# keyed on the torch and Python versions, compiled once if missing) ->
# runtime and test requirements -> mmdeploy -> editable install of mmnextvit
# -> import check.
#
# The users' stack (the oldest one this package supports and tests) is made
# with the commands of docs/install.md's GPU route 1, in their order and as
# written there, under the pins of requirements/oldest.txt: torch 2.1.0 and
# numpy 1.26 from PyPI, openmim, mmengine, `mim install mmcv==2.1.0`, mmdet
# and mmseg, mmdeploy, then `pip install -e .` (with build isolation, as a
# user runs it). OpenMMLab's prebuilt mmcv wheels are CUDA builds on
# download.openmmlab.com, which this machine does not reach: mim is pointed
# (MMCV_BASE_URL, mim's own setting) at a local folder laid out as that
# site, holding mmcv 2.1.0 compiled here against torch 2.1.0 (CPU ops) and
# cached like today's wheel.
#
# A stamp file makes a second run with nothing changed a no-op.
#
# Environment variables:
#   PYTHON            interpreter used to create the venv (default: python3)
#   MMNEXTVIT_CACHE   cache root (default: $HOME/.cache/mmnextvit)
#   MMNEXTVIT_FORCE=1 ignore the stamp and run every step
#   MAX_JOBS          parallel compile jobs for mmcv (default: 2)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

TIER="${1:-current}"
case "$TIER" in
  current)
    VENV="$ROOT/.venv"
    TORCH_SPEC="torch==2.13.0"
    ;;
  oldest)
    VENV="$ROOT/.venv-oldest"
    # Every pip call of this tier (mim's included) resolves under these pins.
    export PIP_CONSTRAINT="$ROOT/requirements/oldest.txt"
    ;;
  *)
    printf '[setup_env] ERROR: unknown stack %q; use "current" or "oldest"\n' \
      "$TIER" >&2
    exit 2
    ;;
esac
PYTHON_BIN="${PYTHON:-python3}"
PY="$VENV/bin/python"
CACHE="${MMNEXTVIT_CACHE:-$HOME/.cache/mmnextvit}"
STAMP="$VENV/.mmnextvit-ready"
MMCV_VERSION="2.1.0"
MMDEPLOY_VERSION="1.3.1"
export MAX_JOBS="${MAX_JOBS:-2}"

T0=$SECONDS
BUILD_PID=""
WHEEL=""

log() { printf '[setup_env:%s] %s\n' "$TIER" "$*"; }
die() { printf '[setup_env:%s] ERROR: %s\n' "$TIER" "$*" >&2; exit 1; }
hms() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }
pip_() { "$PY" -m pip --disable-pip-version-check "$@"; }

cleanup() {
  if [ -n "$BUILD_PID" ] && kill -0 "$BUILD_PID" 2>/dev/null; then
    log "stopping the mmcv build (pid $BUILD_PID)"
    kill "$BUILD_PID" 2>/dev/null || true
  fi
}
trap cleanup EXIT

# Hash of everything that decides what gets installed. The presence of the
# top-level package is included because the editable install only maps
# packages that existed when it ran.
fingerprint() {
  {
    echo "$TIER"
    cat setup.py requirements/*.txt tools/setup_env.sh
    if [ -f mmnextvit/__init__.py ]; then echo 'pkg:mmnextvit'; fi
    readlink -f "$PY" || true
  } | sha256sum | cut -d' ' -f1
}

# One-line import check. Fails if the core stack is broken; an mmnextvit
# that does not import yet is only reported.
check() {
  PYTHONWARNINGS=ignore "$PY" - <<'PYEOF'
import importlib
import numpy, torch, cv2, mmcv, mmcv.ops, mmengine, mmdet, mmseg, mmdeploy  # noqa: E401
try:
    importlib.import_module('mmnextvit')
    nv = importlib.import_module('mmnextvit.version').__version__
except Exception as e:  # package still under construction
    nv = 'NOT IMPORTABLE (%s: %s)' % (type(e).__name__, e)
print('[setup_env] OK: torch %s | numpy %s | mmcv %s (ops) | mmengine %s | mmdet %s | '
      'mmseg %s | mmnextvit %s' % (torch.__version__, numpy.__version__,
                                   mmcv.__version__,
                                   mmengine.__version__, mmdet.__version__,
                                   mmseg.__version__, nv))
PYEOF
}

# ---------------------------------------------------------------- fast path
if [ "${MMNEXTVIT_FORCE:-0}" != 1 ] && [ -x "$PY" ] && [ -f "$STAMP" ] \
    && [ "$(cat "$STAMP")" = "$(fingerprint)" ]; then
  if check; then
    log "environment up to date ($(hms $((SECONDS - T0))))"
    exit 0
  fi
  log "stamp present but the import check failed; running the full setup"
fi
rm -f "$STAMP"

# ------------------------------------------------------------------ 1. venv
if [ ! -x "$PY" ]; then
  log "creating virtualenv in $VENV with $PYTHON_BIN"
  "$PYTHON_BIN" -m venv "$VENV"
fi
"$PY" -c 'import sys; assert sys.version_info >= (3, 8), sys.version' \
  || die "Python >= 3.8 required"

# --------------------------------------------------------- 2. pip basics
log "pip / setuptools / wheel"
pip_ install -q 'pip>=23' 'setuptools>=77.0.3,<82' wheel

mmcv_ok() {
  "$PY" - >/dev/null 2>&1 <<'PYEOF'
import mmcv, mmcv.ops  # noqa: E401
from packaging.version import Version
assert Version('2.0.0rc4') <= Version(mmcv.__version__) < Version('2.2.0')
PYEOF
}

find_wheel() {
  local f
  for f in "$WHEEL_DIR"/mmcv-"$MMCV_VERSION"-*.whl; do
    if [ -f "$f" ]; then echo "$f"; return 0; fi
  done
  return 1
}

build_mmcv() {
  local tmp="$WHEEL_DIR/.tmp-$$" logf="$WHEEL_DIR/mmcv-$MMCV_VERSION-build.log"
  local start=$SECONDS last=$SECONDS step
  rm -rf "$tmp"
  log "compiling mmcv $MMCV_VERSION with ops (MAX_JOBS=$MAX_JOBS);" \
      "7-25 minutes on 2 cores, once: the wheel is cached"
  log "  full log: $logf"
  # --no-cache-dir: pip's own wheel cache is not keyed on the torch version.
  MMCV_WITH_OPS=1 "$PY" -m pip --disable-pip-version-check wheel -v \
    --no-cache-dir --no-build-isolation --no-deps "mmcv==$MMCV_VERSION" \
    -w "$tmp" >"$logf" 2>&1 &
  BUILD_PID=$!
  while kill -0 "$BUILD_PID" 2>/dev/null; do
    sleep 5
    if ((SECONDS - last >= 30)); then
      last=$SECONDS
      step="$(tail -c 2000000 "$logf" | grep -oE '\[[0-9]+/[0-9]+\]' \
        | tail -n 1 || true)"
      log "  mmcv build ${step:-[preparing]} elapsed $(hms $((SECONDS - start)))"
    fi
  done
  if ! wait "$BUILD_PID"; then
    BUILD_PID=""
    echo '----- last 60 lines of the mmcv build log -----' >&2
    tail -n 60 "$logf" >&2
    rm -rf "$tmp"
    die "mmcv build failed after $(hms $((SECONDS - start))); see $logf"
  fi
  BUILD_PID=""
  mv "$tmp"/mmcv-"$MMCV_VERSION"-*.whl "$WHEEL_DIR"/
  rm -rf "$tmp"
  log "  mmcv built in $(hms $((SECONDS - start)))"
}

# The cached mmcv wheel for the venv's torch, compiled with the build
# prerequisites first if the cache has none; sets WHEEL.
cached_mmcv_wheel() {
  local tag
  tag="$("$PY" -c 'import sys, torch
print("torch-%s-cp%d%d" % ((torch.__version__,) + tuple(sys.version_info[:2])))')"
  WHEEL_DIR="$CACHE/wheels/$tag"
  mkdir -p "$WHEEL_DIR"
  # Serialise concurrent runs sharing one cache so mmcv is compiled once.
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$WHEEL_DIR/.lock"
    flock 9
  fi
  if WHEEL="$(find_wheel)"; then
    log "using cached mmcv wheel: $WHEEL"
  else
    log "mmcv build prerequisites"
    pip_ install -q -r requirements/build.txt
    build_mmcv
    WHEEL="$(find_wheel)" || die "no mmcv wheel found in $WHEEL_DIR after the build"
  fi
}

# mmengine's metadata asks for opencv-python, the build prerequisites bring
# opencv-python-headless. Both ship the same cv2 package; make the headless
# files the ones on disk so cv2 does not need desktop GL libraries.
headless_opencv() {
  if pip_ show -q opencv-python >/dev/null 2>&1; then
    local ver
    ver="$(pip_ show opencv-python | sed -n 's/^Version: //p')"
    pip_ install -q --no-deps --force-reinstall "opencv-python-headless==$ver"
  fi
}

# mmdeploy without its declared dependencies (its protobuf<=3.20.2 pin
# would downgrade onnx and protobuf; requirements/deploy.txt says why),
# then what it needs at run time.
install_mmdeploy() {
  log "mmdeploy $MMDEPLOY_VERSION (--no-deps) and its run-time requirements"
  pip_ install -q --no-deps "mmdeploy==$MMDEPLOY_VERSION"
  pip_ install -q -r requirements/deploy.txt
}

if [ "$TIER" = current ]; then
  # ----------------------------------------------------------- 3. torch
  if "$PY" -c 'import torch' >/dev/null 2>&1; then
    log "torch present: $("$PY" -c 'import torch; print(torch.__version__)')"
  else
    log "installing $TORCH_SPEC"
    pip_ install -q "$TORCH_SPEC"
  fi
  if pip_ show -q torchvision >/dev/null 2>&1; then
    log "WARNING: torchvision is installed; it is not needed and may fail to" \
        "import beside this torch (pip uninstall torchvision)"
  fi

  # ---------------------------------------------------- 4. mmcv with ops
  if mmcv_ok; then
    log "mmcv with ops present: $("$PY" -c 'import mmcv; print(mmcv.__version__)')"
  else
    cached_mmcv_wheel
    # mmcv's own dependencies (mmengine among them) come with step 5.
    pip_ install -q --no-deps --force-reinstall "$WHEEL"
  fi

  # ------------------------------------ 5. runtime + test requirements
  log "runtime and test requirements"
  pip_ install -q -r requirements/build.txt -r requirements/runtime.txt \
    -r requirements/tests.txt
  install_mmdeploy
  headless_opencv
  if ! mmcv_ok; then
    "$PY" -c 'import mmcv.ops' 2>&1 | tail -n 5 >&2 || true
    die "mmcv.ops does not import${WHEEL:+ (installed from $WHEEL; delete it and rerun)}"
  fi

  # -------------------------------------------------- 6. editable install
  log "editable install of mmnextvit"
  pip_ install -q --no-deps --no-build-isolation -e .
else
  # docs/install.md, GPU route 1, command for command (each `route` line is
  # a line of its code block; tests/test_install.py checks they agree),
  # with the venv's own pip and mim and PIP_CONSTRAINT set above.
  route() {
    log "$*"
    local tool="$1"
    shift
    if [ "$tool" = mim ]; then
      MMCV_BASE_URL="file://$MIRROR" "$VENV/bin/mim" "$1" -q "${@:2}"
    else
      "$VENV/bin/$tool" "$1" -q "${@:2}"
    fi
  }
  route pip install torch==2.1.0
  route pip install -U openmim
  cached_mmcv_wheel
  # OpenMMLab's download site as mim reads it (mmcv/dist/<cuda>/<torch>/),
  # holding the wheel compiled here.
  MIRROR="$CACHE/openmmlab"
  FIND_LINK="$("$PY" -c 'import sys
from mim.commands.install import get_mmcv_full_find_link
print(get_mmcv_full_find_link(sys.argv[1]))' "file://$MIRROR")"
  LINK_DIR="$(dirname "${FIND_LINK#file://}")"
  mkdir -p "$LINK_DIR"
  ln -sf "$WHEEL" "$LINK_DIR/"
  printf '<a href="%s">%s</a>\n' "$(basename "$WHEEL")" \
    "$(basename "$WHEEL")" >"$LINK_DIR/index.html"
  route pip install mmengine==0.10.7
  route mim install mmcv==2.1.0
  route pip install mmdet==3.3.0 mmsegmentation==1.2.2
  route pip install --no-deps mmdeploy==1.3.1
  route pip install -e '.[deploy]'
  mmcv_ok || die "mmcv.ops does not import after mim install (from $WHEEL)"
  log "test requirements and the comparison models"
  pip_ install -q -r requirements/tests.txt -r requirements/comparison.txt
  headless_opencv
fi

# -------------------------------------------------------------- 7. check
check || die "import check failed"
fingerprint >"$STAMP"
log "done in $(hms $((SECONDS - T0)))"
