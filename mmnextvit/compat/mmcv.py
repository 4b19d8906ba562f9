# Copyright (c) mmnextvit contributors. All rights reserved.
"""Bridges to mmcv 2.1.0.

**CPU autocast through mmcv's compiled ops** (:func:`install`). mmcv's CPU
kernels of NMS and RoIAlign take fp32 only ("expected scalar type Float but
found BFloat16"), and autocast does not know them, so a detector tested
under bf16 autocast on the CPU (mmengine's ``TestLoop(fp16=True)``,
``tools/test.py --precision bf16``) stopped at the first NMS of its RPN.
Their forwards are wrapped in torch's ``custom_fwd``: under CPU autocast
they get fp32 inputs and run with autocast off, as autocast itself treats
the ops it lists as fp32-only. Without CPU autocast nothing changes (CUDA
autocast included: the CUDA kernels take fp16).
"""
import torch

__all__ = ['install']

_MARK = '_mmnextvit_cpu_autocast_fp32'


def _fp32_under_cpu_autocast(function_cls) -> None:
    forward = function_cls.forward
    if getattr(forward, _MARK, False):
        return
    wrapped = torch.amp.custom_fwd(
        forward, device_type='cpu', cast_inputs=torch.float32)
    setattr(wrapped, _MARK, True)
    function_cls.forward = staticmethod(wrapped)


def install() -> None:
    """Let mmcv's NMS and RoIAlign run under CPU autocast (idempotent)."""
    try:
        from mmcv.ops.nms import NMSop
        from mmcv.ops.roi_align import RoIAlignFunction
    except ImportError:  # mmcv without compiled ops: nothing to bridge
        return
    for function_cls in (NMSop, RoIAlignFunction):
        _fp32_under_cpu_autocast(function_cls)
