# Copyright (c) mmnextvit contributors. All rights reserved.
"""Next-ViT for the OpenMMLab 2.0 stack (MMEngine, MMCV, MMDetection and
MMSegmentation)."""
import mmcv
import mmengine
from mmengine.utils import digit_version

from .version import __version__, version_info

# The same window as mmdet 3.3 / mmseg 1.2: mmcv 2.2 is refused by both.
MMCV_MIN, MMCV_MAX = '2.0.0rc4', '2.2.0'
# The workarounds in this package target mmengine 0.10 behaviour.
MMENGINE_MIN, MMENGINE_MAX = '0.10.0', '1.0.0'

if not (digit_version(MMCV_MIN) <= digit_version(mmcv.__version__) <
        digit_version(MMCV_MAX)):
    raise ImportError(
        f'mmnextvit needs {MMCV_MIN} <= mmcv < {MMCV_MAX}, found '
        f'{mmcv.__version__}; install mmcv 2.1.0 (see the README).')
if not (digit_version(MMENGINE_MIN) <= digit_version(mmengine.__version__) <
        digit_version(MMENGINE_MAX)):
    raise ImportError(
        f'mmnextvit needs {MMENGINE_MIN} <= mmengine < {MMENGINE_MAX}, found '
        f'{mmengine.__version__}; install mmengine 0.10.7.')

from . import engine  # noqa: E402,F401  (registers the atomic_local backend)
from .compat import mmcv as _mmcv_compat  # noqa: E402
from .compat import mmdeploy as _mmdeploy_compat  # noqa: E402
from .compat import mmdet as _mmdet_compat  # noqa: E402
from .compat import mmengine as _mmengine_compat  # noqa: E402
from .models import NextViT  # noqa: E402  (registers the backbone)
from .engine.safe_loading import load_local_checkpoint  # noqa: E402
from .registry import MODELS  # noqa: E402

# Safe checkpoint types, mmengine's local loader, `mmnextvit::` config paths.
_mmengine_compat.install(checkpoint_loader=load_local_checkpoint)
# mmcv's NMS and RoIAlign under CPU autocast (bf16 testing).
_mmcv_compat.install()
# mmdet's box post-processing in fp32 under autocast (bf16 / fp16 testing).
_mmdet_compat.install()
# mmdeploy's export on torch 2.x and its OpenVINO backend on current
# OpenVINO, once mmdeploy's API is imported (also by mmdeploy's own tools,
# whose model configs import this package).
_mmdeploy_compat.install_when_imported()

__all__ = ['__version__', 'version_info', 'MODELS', 'NextViT']
