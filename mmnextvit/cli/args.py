# Copyright (c) mmnextvit contributors. All rights reserved.
"""Parsing of command-line values shared by the tools."""
import argparse
from typing import Optional, Tuple

from .errors import ToolError

__all__ = ['add_cfg_options', 'autocast_dtype', 'parse_image_size']

# The smallest input side Next-ViT takes (its stage-3 attention pools 16
# tokens into one key, see NextViT._check_input).
MIN_IMAGE_SIDE = 32


def parse_image_size(text: str) -> Tuple[int, int]:
    """``'800x1216'`` -> ``(800, 1216)`` (height, width).

    Raises:
        ValueError: ``text`` is not two integers joined by ``x``, or a side
            is below ``MIN_IMAGE_SIDE``; the message names ``text`` and the
            expected form.
    """
    try:
        height, width = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise ValueError(f"size '{text}' is not HxW; write it as e.g. "
                         '800x1216') from None
    if min(height, width) < MIN_IMAGE_SIDE:
        raise ValueError(f"size '{text}' is too small; use at least "
                         f'{MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE}')
    return height, width


def add_cfg_options(parser: argparse.ArgumentParser, example: str) -> None:
    """The tools' ``--cfg-options KEY=VALUE ...`` (mmengine's
    ``DictAction``), with ``example`` in its help."""
    from mmengine.config import DictAction
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        metavar='KEY=VALUE',
        help=f'override config entries, e.g. {example}')


def autocast_dtype(precision: str, device_type: str):
    """The autocast dtype of a tool's ``--precision`` (``fp32``, ``bf16``
    or ``fp16``) on ``device_type`` (``cpu`` or ``cuda``); None for fp32
    (no autocast).

    Raises:
        ToolError: the device cannot autocast to it: fp16 on a CPU (CPU
            autocast runs in bf16 only), bf16 on a GPU without bf16.
    """
    import torch
    dtype: Optional[torch.dtype] = dict(
        fp32=None, bf16=torch.bfloat16, fp16=torch.float16)[precision]
    if device_type == 'cuda' and dtype == torch.bfloat16 \
            and not torch.cuda.is_bf16_supported():
        raise ToolError('--precision bf16: this GPU has no bf16 support; use '
                        '--precision fp16')
    if device_type == 'cpu' and dtype == torch.float16:
        raise ToolError('--precision fp16: autocast on the CPU runs in bf16 '
                        'only; use --precision bf16')
    return dtype
