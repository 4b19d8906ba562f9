# Copyright (c) mmnextvit contributors. All rights reserved.
"""Bridges to mmcv 2.1.0.

**CPU autocast through mmcv's compiled ops** (:func:`install`). mmcv's CPU
kernels of NMS and RoIAlign take fp32 only ("expected scalar type Float but
found BFloat16"), and autocast does not know them, so a detector tested
under bf16 autocast on the CPU (mmengine's ``TestLoop(fp16=True)``,
``tools/test.py --precision bf16``) stopped at the first NMS of its RPN.
Their forwards are wrapped: under CPU autocast they get fp32 inputs and
run with autocast off (as autocast treats the ops it lists as fp32-only),
and give floating outputs back in their input's dtype. Without CPU
autocast nothing changes (CUDA autocast included: the CUDA kernels take
fp16). Applied when mmcv's ``nms`` / ``roi_align`` modules are imported
(:func:`mmnextvit.compat.when_imported`), so an mmcv without compiled ops
is never asked for them.
"""
import functools

import torch

from . import patch_when_imported
from .torch import autocast_dtype

__all__ = ['install']

_MARK = '_mmnextvit_cpu_autocast_fp32'


def _fp32_under_cpu_autocast(function_cls) -> None:
    """Run ``function_cls.forward`` in fp32 under CPU autocast, returning
    floating outputs in the dtype of its first tensor input (mmdet writes
    RoIAlign's output into a buffer of the features' dtype)."""
    forward = function_cls.forward
    if getattr(forward, _MARK, False):
        return

    @functools.wraps(forward)
    def wrapped(ctx, *args):
        if autocast_dtype('cpu') is None:
            return forward(ctx, *args)
        dtype = next(a.dtype for a in args if isinstance(a, torch.Tensor))
        args = [
            a.float() if isinstance(a, torch.Tensor) and a.is_floating_point()
            else a for a in args
        ]
        with torch.autocast('cpu', enabled=False):
            out = forward(ctx, *args)
        if isinstance(out, torch.Tensor) and out.is_floating_point():
            out = out.to(dtype)
        return out

    setattr(wrapped, _MARK, True)
    function_cls.forward = staticmethod(wrapped)


# The modules and classes bridged: imported by whoever uses them (an mmcv
# built without ops never imports them, and needs no bridge).
BRIDGED = (('mmcv.ops.nms', 'NMSop'), ('mmcv.ops.roi_align',
                                       'RoIAlignFunction'))


def install() -> None:
    """Let mmcv's NMS and RoIAlign run under CPU autocast, from the moment
    their modules are imported (idempotent; imports nothing)."""
    patch_when_imported(BRIDGED, _fp32_under_cpu_autocast)
