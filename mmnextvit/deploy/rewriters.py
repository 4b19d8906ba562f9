# Copyright (c) mmnextvit contributors. All rights reserved.
"""Export rewrites for mmdeploy, imported by mmdeploy before it traces a
model (``codebase_config.module`` of every deploy config in
``configs/deploy/``).

Importing this module also applies the torch 2.x bridges of
:mod:`mmnextvit.compat.mmdeploy`.

Each rewrite computes what the module computes, from the traced input size
instead of Python ints (which tracing records as constants of the export
size), so a dynamic-shape export is right at every size:

- ``torch.nn.AdaptiveAvgPool2d`` (UperNet's pyramid pooling): two averaging
  matrix products (:func:`adaptive_avg_pool`). ONNX has no adaptive
  pooling, and mmdeploy's own rewrite of ``F.adaptive_avg_pool2d`` uses an
  average pooling whose window is taken from the export size, which is
  exact only where that size divides evenly into the grid.
- mmseg's ``Upsample`` with a scale factor (Semantic FPN's head):
  ``F.interpolate`` with the scale factor itself; mmseg turns it into an
  output size of Python ints first. Same output size, ``floor(side *
  factor)``.
"""
import torch
import torch.nn.functional as F
from mmdeploy.core import FUNCTION_REWRITER

import mmnextvit  # noqa: F401  (registers the backbone, loads checkpoints)
from mmnextvit.compat import mmdeploy as _bridges

__all__ = ['adaptive_avg_pool', 'pooling_matrix']

_bridges.install()


def pooling_matrix(length, cells: int, like: torch.Tensor) -> torch.Tensor:
    """The ``(cells, length)`` matrix whose rows average the windows of
    adaptive average pooling along one axis of ``length`` elements: row
    ``i`` covers ``[floor(i * length / cells), ceil((i + 1) * length /
    cells))``. ``length`` may be a traced size."""
    index = torch.arange(cells, device=like.device)
    start = torch.div(index * length, cells, rounding_mode='floor')
    end = torch.div((index + 1) * length + cells - 1,
                    cells,
                    rounding_mode='floor')
    position = torch.arange(length, device=like.device)
    inside = ((position[None] >= start[:, None])
              & (position[None] < end[:, None]))
    return inside.to(like.dtype) / (end - start)[:, None].to(like.dtype)


def adaptive_avg_pool(x: torch.Tensor, output_size) -> torch.Tensor:
    """``F.adaptive_avg_pool2d(x, output_size)`` as two matrix products
    built from ``x``'s (possibly traced) height and width."""
    rows, cols = output_size if isinstance(output_size,
                                           (tuple, list)) else (output_size,
                                                                output_size)
    rows = x.shape[-2] if rows is None else rows
    cols = x.shape[-1] if cols is None else cols
    pool_rows = pooling_matrix(x.shape[-2], rows, x)
    pool_cols = pooling_matrix(x.shape[-1], cols, x)
    return pool_rows @ x @ pool_cols.transpose(0, 1)


@FUNCTION_REWRITER.register_rewriter(
    func_name='torch.nn.AdaptiveAvgPool2d.forward')
def adaptive_avg_pool2d__forward(self, x: torch.Tensor) -> torch.Tensor:
    """``AdaptiveAvgPool2d`` that follows the input size in the graph."""
    return adaptive_avg_pool(x, self.output_size)


@FUNCTION_REWRITER.register_rewriter(
    func_name='mmseg.models.utils.wrappers.Upsample.forward')
def upsample__forward(self, x: torch.Tensor) -> torch.Tensor:
    """mmseg's ``Upsample`` that keeps a scale factor a scale factor."""
    if self.size:
        return FUNCTION_REWRITER.get_context().origin_func(self, x)
    return F.interpolate(
        x,
        scale_factor=self.scale_factor,
        mode=self.mode,
        align_corners=self.align_corners)
