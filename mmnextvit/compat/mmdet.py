# Copyright (c) mmnextvit contributors. All rights reserved.
"""Bridges to mmdet 3.3.0.

**Box post-processing in fp32 under autocast** (:func:`install`). mmdet 3
decodes boxes in the dtype of the heads' outputs: under autocast the RPN's
anchors are made in that dtype (``grid_priors(dtype=cls_scores[0].dtype)``)
and its proposals, the RoIs and the decoded detections follow. A bf16
coordinate between 128 and 256 is a multiple of 1 pixel (of 4 pixels
between 512 and 1024; fp16 is 4 times finer but still coarse at detection
sizes), so a detector tested under autocast lost box precision that the
network never lost: the shapes Mask R-CNN of ``make demo`` (bbox / segm AP
0.727 / 0.805 in fp32) gave 0.710 / 0.788 under CPU bf16 autocast, and
gives 0.731 / 0.800 with this bridge (``tools/test.py --precision bf16``
on 1000 RPN proposals per image; 2026-12-02). mmdet 2 ran this
post-processing in fp32 (``force_fp32`` on ``get_bboxes``); mmdet 3 dropped
that decorator. The wrapped
``predict_by_feat`` of the dense heads (RPN included) and of the RoI box
head take fp32 copies of their tensor inputs and run with autocast off; the
layers before them stay in the reduced precision. Without autocast nothing
changes. Heads that override ``predict_by_feat`` themselves are not
covered. Applied when mmdet's head modules are imported
(:func:`mmnextvit.compat.when_imported`).
"""
import functools
import importlib

import torch

from . import patch_when_imported
from .torch import autocast_dtype

__all__ = ['install', 'post_processing_owners']

_MARK = '_mmnextvit_fp32_post_processing'


# The modules and classes bridged.
BRIDGED = (('mmdet.models.dense_heads.base_dense_head', 'BaseDenseHead'),
           ('mmdet.models.roi_heads.bbox_heads.bbox_head', 'BBoxHead'))


def post_processing_owners() -> tuple:
    """The mmdet classes whose ``predict_by_feat`` is run in fp32
    (:data:`BRIDGED`, imported on call)."""
    return tuple(
        getattr(importlib.import_module(module_name), class_name)
        for module_name, class_name in BRIDGED)


def _autocast_on() -> bool:
    return (autocast_dtype('cpu') is not None
            or autocast_dtype('cuda') is not None)


def _fp32(item):
    """``item`` with every reduced-precision floating tensor in it (through
    lists and tuples; configs and image metas pass as they are) as fp32."""
    if isinstance(item, torch.Tensor):
        return item.float() if item.dtype in (torch.bfloat16,
                                              torch.float16) else item
    if isinstance(item, (list, tuple)):
        return type(item)(_fp32(i) for i in item)
    return item


def _fp32_under_autocast(owner) -> None:
    predict_by_feat = owner.predict_by_feat
    if getattr(predict_by_feat, _MARK, False):
        return

    @functools.wraps(predict_by_feat)
    def wrapped(self, *args, **kwargs):
        if not _autocast_on():
            return predict_by_feat(self, *args, **kwargs)
        with torch.autocast('cpu', enabled=False), \
                torch.autocast('cuda', enabled=False):
            return predict_by_feat(self, *_fp32(args), **{
                key: _fp32(value)
                for key, value in kwargs.items()
            })

    setattr(wrapped, _MARK, True)
    owner.predict_by_feat = wrapped


def install() -> None:
    """Run mmdet's box post-processing in fp32 under autocast, from the
    moment mmdet's head modules are imported (idempotent; imports nothing,
    so a process that never builds a detector never imports mmdet)."""
    patch_when_imported(BRIDGED, _fp32_under_autocast)
