# Copyright (c) mmnextvit contributors. All rights reserved.
"""Next-ViT backbone for dense prediction.

Next-ViT (Li et al., "Next-ViT: Next Generation Vision Transformer for
Efficient Deployment in Realistic Industrial Scenarios", arXiv 2207.05501)
stacks two kinds of blocks: a convolutional block (NCB, ``NextConvBlock``) and
a hybrid block (NTB, ``NextTransformerBlock``) that runs efficient multi-head
self-attention on three quarters of its channels and convolutional attention
on the rest.

The attribute names of every module follow the released checkpoints
(``stem.*``, ``features.{i}.*``, ``extra_norm_list.*``, ``norm.*``), so the
upstream ImageNet, detection and segmentation weights load unchanged.
"""
import itertools
import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmcv.cnn import build_norm_layer
from mmcv.cnn.bricks import DropPath
from mmengine.model import BaseModule
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

from mmnextvit.compat.torch import autocast_dtype
from mmnextvit.ops import cpu_kernels as kernels
from mmnextvit.registry import MODELS
from ..utils.bn_folding import (affine_of, bn_affine, chain, fold_after,
                                fold_affine_before, fold_before, fold_bn_after)

# Channel count of one attention head, both for the grouped convolution of
# the convolutional attention and for the self-attention heads.
HEAD_DIM = 32
# Share of an NTB's output channels that go through self-attention.
MIX_BLOCK_RATIO = 0.75
# Spatial reduction of keys and values in the NTB of each stage.
SR_RATIOS = (8, 4, 2, 1)
STAGE_STRIDES = (1, 2, 2, 2)


def make_divisible(value: float, divisor: int) -> int:
    """Round ``value`` to the nearest multiple of ``divisor`` (MobileNet rule:
    never go below 90% of ``value``)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def _norm(norm_cfg: dict, num_features: int) -> nn.Module:
    return build_norm_layer(norm_cfg, num_features)[1]


def _norm1d(norm_cfg: dict, num_features: int) -> nn.Module:
    """The token-sequence counterpart of ``norm_cfg``: ``BN`` becomes
    ``BN1d``; synchronised and other norms accept any rank as they are."""
    cfg = dict(norm_cfg)
    if cfg['type'] in ('BN', 'BN2d'):
        cfg['type'] = 'BN1d'
    return build_norm_layer(cfg, num_features)[1]


# ---------------------------------------------------------------------------
# Blocks
#
# Every block has two forwards that compute the same function:
# ``forward`` runs the modules as they are (training, autograd, gradient
# checkpointing, any norm), ``forward_inference`` serves eval mode without
# autograd: it folds each inference-mode batch norm into the neighbouring
# convolution or linear map on the fly (what switch_to_deploy() does once
# and for all) and fuses ReLU and residual adds into the convolutions.
# ---------------------------------------------------------------------------
class ConvNormReLU(nn.Module):
    """3x3 convolution, norm and ReLU: one unit of the stem."""

    def __init__(self, in_channels: int, out_channels: int, stride: int,
                 norm_cfg: dict):
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.norm = _norm(norm_cfg, out_channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))

    def forward_inference(self, x: torch.Tensor,
                          fused_kernel: bool) -> torch.Tensor:
        weight, bias = fold_after(self.conv.weight, self.conv.bias,
                                  affine_of(self.norm))
        return kernels.conv2d(
            x, self.conv, weight, bias, relu=True, fused_kernel=fused_kernel)

    def switch_to_deploy(self) -> None:
        fold_bn_after(self.conv, self.norm)
        self.norm = nn.Identity()


class PatchEmbed(nn.Module):
    """Entry of every block: halves the resolution (2x2 average pool, ceil
    mode, then a 1x1 projection) when ``stride == 2``, projects the channels
    when they change, and is the identity otherwise."""

    def __init__(self, in_channels: int, out_channels: int, stride: int,
                 norm_cfg: dict):
        super().__init__()
        if stride == 2:
            self.avgpool = nn.AvgPool2d(
                2, stride=2, ceil_mode=True, count_include_pad=False)
        else:
            self.avgpool = nn.Identity()
        if stride == 2 or in_channels != out_channels:
            self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
            self.norm = _norm(norm_cfg, out_channels)
        else:
            self.conv = nn.Identity()
            self.norm = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(self.avgpool(x)))

    def forward_inference(self, x: torch.Tensor,
                          fused_kernel: bool) -> torch.Tensor:
        x = self.avgpool(x)
        if isinstance(self.conv, nn.Identity):
            return x
        weight, bias = fold_after(self.conv.weight, self.conv.bias,
                                  affine_of(self.norm))
        return kernels.conv2d(
            x, self.conv, weight, bias, fused_kernel=fused_kernel)

    def switch_to_deploy(self) -> None:
        if isinstance(self.conv, nn.Conv2d):
            fold_bn_after(self.conv, self.norm)
            self.norm = nn.Identity()


class ConvAttention(nn.Module):
    """Multi-head convolutional attention (MHCA): a grouped 3x3 convolution
    with one group per head, norm, ReLU and a 1x1 projection."""

    def __init__(self, channels: int, norm_cfg: dict):
        super().__init__()
        self.group_conv3x3 = nn.Conv2d(
            channels,
            channels,
            3,
            padding=1,
            groups=channels // HEAD_DIM,
            bias=False)
        self.norm = _norm(norm_cfg, channels)
        self.act = nn.ReLU(inplace=True)
        self.projection = nn.Conv2d(channels, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection(self.act(self.norm(self.group_conv3x3(x))))

    def forward_inference(self,
                          x: torch.Tensor,
                          fused_kernel: bool,
                          overwrite: bool = False) -> torch.Tensor:
        """``x + self(x)``, written over ``x`` when ``overwrite``."""
        weight, bias = fold_after(self.group_conv3x3.weight,
                                  self.group_conv3x3.bias,
                                  affine_of(self.norm))
        y = kernels.conv2d(
            x,
            self.group_conv3x3,
            weight,
            bias,
            relu=True,
            fused_kernel=fused_kernel)
        return kernels.conv2d(
            y,
            self.projection,
            self.projection.weight,
            self.projection.bias,
            residual=x,
            fused_kernel=fused_kernel,
            overwrite_residual=overwrite)

    def switch_to_deploy(self) -> None:
        fold_bn_after(self.group_conv3x3, self.norm)
        self.norm = nn.Identity()


# Hidden-map size above which the inference path runs an MLP in strips of
# rows. glibc serves every block over 32 MiB with a fresh mmap, page-faulted
# again at every forward (at 800x1216 the stage-1 and stage-2 hidden maps,
# 67 and 35 MiB); strips of at most this size come from reused memory. With
# an allocator that keeps freed memory the whole map is a little faster, so
# smaller maps stay whole (measured in docs/benchmarks.md).
STRIP_HIDDEN_BYTES = 32 << 20


class ConvMlp(nn.Module):
    """Two 1x1 convolutions with ReLU between; the hidden width is
    ``channels * mlp_ratio`` rounded to a multiple of 32."""

    def __init__(self, channels: int, mlp_ratio: float, drop: float):
        super().__init__()
        hidden = make_divisible(channels * mlp_ratio, 32)
        self.conv1 = nn.Conv2d(channels, hidden, 1)
        self.act = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(hidden, channels, 1)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.act(self.conv1(x)))
        return self.drop(self.conv2(x))

    def forward_inference(self,
                          x: torch.Tensor,
                          pre_norm: nn.Module,
                          fused_kernel: bool,
                          overwrite: bool = False) -> torch.Tensor:
        """``x + self(pre_norm(x))``, written over ``x`` when
        ``overwrite``."""
        weight, bias = fold_before(self.conv1.weight, self.conv1.bias,
                                   affine_of(pre_norm))
        rows = self._strip_rows(x, fused_kernel and overwrite)
        if rows:
            # Both convolutions are 1x1, so each strip of rows can go
            # through the whole MLP before the next one: the hidden map is
            # only ever allocated a strip at a time (see
            # STRIP_HIDDEN_BYTES).
            for image, top in itertools.product(
                    range(x.shape[0]), range(0, x.shape[2], rows)):
                part = x[image:image + 1, :, top:top + rows]
                y = kernels.conv2d(
                    part,
                    self.conv1,
                    weight,
                    bias,
                    relu=True,
                    fused_kernel=True)
                out = kernels.conv2d(
                    y,
                    self.conv2,
                    self.conv2.weight,
                    self.conv2.bias,
                    residual=part,
                    fused_kernel=True,
                    overwrite_residual=True)
                if out.data_ptr() != part.data_ptr():
                    part.copy_(out)
            return x
        y = kernels.conv2d(
            x, self.conv1, weight, bias, relu=True, fused_kernel=fused_kernel)
        return kernels.conv2d(
            y,
            self.conv2,
            self.conv2.weight,
            self.conv2.bias,
            residual=x,
            fused_kernel=fused_kernel,
            overwrite_residual=overwrite)

    def _strip_rows(self, x: torch.Tensor, may_overwrite: bool) -> int:
        """Rows per strip for a strip-wise MLP over ``x`` (image by image),
        or 0 to run it whole: strips need the in-place fused add and a
        channels-last map whose hidden map per image exceeds
        ``STRIP_HIDDEN_BYTES``."""
        if (not may_overwrite or not kernels.in_place_add_available()
                or not x.is_contiguous(memory_format=torch.channels_last)):
            return 0
        height, width = x.shape[2:]
        row_bytes = width * self.conv1.out_channels * x.element_size()
        if row_bytes * height <= STRIP_HIDDEN_BYTES:
            return 0
        return kernels.even_parts(height, row_bytes, STRIP_HIDDEN_BYTES)


class NextConvBlock(nn.Module):
    """Next Convolution Block (NCB): convolutional attention and an MLP,
    each in a residual branch; the MLP branch starts with a norm."""

    def __init__(self, in_channels: int, out_channels: int, stride: int,
                 drop_path: float, drop: float, norm_cfg: dict,
                 mlp_ratio: float = 3.):
        super().__init__()
        self.patch_embed = PatchEmbed(in_channels, out_channels, stride,
                                      norm_cfg)
        self.mhca = ConvAttention(out_channels, norm_cfg)
        self.attention_path_dropout = DropPath(drop_path)
        self.norm = _norm(norm_cfg, out_channels)
        self.mlp = ConvMlp(out_channels, mlp_ratio, drop)
        self.mlp_path_dropout = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        x = x + self.attention_path_dropout(self.mhca(x))
        return x + self.mlp_path_dropout(self.mlp(self.norm(x)))

    def forward_inference(self,
                          x: torch.Tensor,
                          fused_kernel: bool,
                          overwrite: bool = False) -> torch.Tensor:
        """``self(x)``; with ``overwrite`` the caller gives up ``x`` and
        its memory may be reused for the result."""
        y = self.patch_embed.forward_inference(x, fused_kernel)
        y = self.mhca.forward_inference(
            y, fused_kernel, overwrite=overwrite or y is not x)
        return self.mlp.forward_inference(
            y, self.norm, fused_kernel, overwrite=True)

    def switch_to_deploy(self) -> None:
        fold_affine_before(self.mlp.conv1, *bn_affine(self.norm))
        self.norm = nn.Identity()
        self.patch_embed.switch_to_deploy()
        self.mhca.switch_to_deploy()


class EfficientAttention(nn.Module):
    """Efficient multi-head self-attention (E-MHSA) over a token sequence.

    Keys and values come from a shortened sequence: when ``sr_ratio > 1``
    the flattened (row-major) tokens are averaged in windows of
    ``sr_ratio ** 2`` consecutive tokens, so windows run along rows and wrap
    across row ends, and trailing tokens that do not fill a window are
    dropped. This is what the released models were trained with, so it is
    kept exactly.

    The attention itself is ``F.scaled_dot_product_attention`` (a fused
    kernel that never stores the full attention matrix) with the explicit
    scale ``HEAD_DIM ** -0.5``.
    """

    def __init__(self, dim: int, sr_ratio: int, attn_drop: float,
                 proj_drop: float, norm_cfg: dict):
        super().__init__()
        self.num_heads = dim // HEAD_DIM
        self.scale = HEAD_DIM**-0.5
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj_drop = nn.Dropout(proj_drop)
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.norm = _norm1d(norm_cfg, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: tokens of shape (B, N, C)."""
        if self.sr_ratio > 1:
            kv = self.norm(self.reduce(x).transpose(1, 2)).transpose(1, 2)
        else:
            kv = x
        out = self.attend(self.q(x), self.k(kv), self.v(kv))
        return self.proj_drop(self.proj(out))

    def forward_inference(self,
                          x: torch.Tensor,
                          pre_norm: nn.Module,
                          fused_kernel: bool = False) -> torch.Tensor:
        """``self(pre_norm(x))`` with both norms folded into the linears
        (the average pool commutes with a per-channel affine map)."""
        pre_affine = affine_of(pre_norm)
        q_params = fold_before(self.q.weight, self.q.bias, pre_affine)
        if self.sr_ratio > 1:
            kv_affine = chain(pre_affine, affine_of(self.norm))
            kv = self.reduce(x)
        else:
            kv_affine, kv = pre_affine, x
        q = kernels.linear(x, self.q, *q_params, fused_kernel)
        k = kernels.linear(kv, self.k,
                           *fold_before(self.k.weight, self.k.bias, kv_affine),
                           fused_kernel)
        v = kernels.linear(kv, self.v,
                           *fold_before(self.v.weight, self.v.bias, kv_affine),
                           fused_kernel)
        return kernels.linear(
            self.attend_inference(q, k, v, fused_kernel), self.proj,
            self.proj.weight, self.proj.bias, fused_kernel)

    def reduce(self, x: torch.Tensor) -> torch.Tensor:
        """Average windows of ``sr_ratio ** 2`` consecutive tokens, dropping
        a trailing partial window (``AvgPool1d`` along the sequence)."""
        window = self.sr_ratio**2
        batch, length, channels = x.shape
        kept = length // window
        return x[:, :kept * window].reshape(batch, kept, window,
                                            channels).mean(2)

    def attend(self, q: torch.Tensor, k: torch.Tensor,
               v: torch.Tensor) -> torch.Tensor:
        """Multi-head attention of (B, N, C) queries over (B, M, C) keys and
        values; returns (B, N, C)."""
        batch, length, channels = q.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(batch, -1, self.num_heads,
                             channels // self.num_heads).transpose(1, 2)

        dropout = self.attn_drop.p if self.training else 0.
        out = F.scaled_dot_product_attention(
            heads(q), heads(k), heads(v), dropout_p=dropout, scale=self.scale)
        return out.transpose(1, 2).reshape(batch, length, channels)

    def attend_inference(self, q: torch.Tensor, k: torch.Tensor,
                         v: torch.Tensor, fused_kernel: bool) -> torch.Tensor:
        """:meth:`attend` in the inference path: on oneDNN convolutions
        where :func:`onednn_attention_usable` allows, else fused SDPA."""
        if fused_kernel and kernels.attention_usable(q, k):
            return kernels.attention(q, k, v, self.num_heads, self.scale)
        return self.attend(q, k, v)

    def fold_pre_norm(self, pre_norm: _BatchNorm) -> None:
        """Absorb the norm applied to the tokens before this module (and the
        norm of the pooled tokens, which commutes with the average pool)."""
        scale, shift = bn_affine(pre_norm)
        fold_affine_before(self.q, scale, shift)
        if self.sr_ratio > 1:
            scale, shift = chain((scale, shift), bn_affine(self.norm))
            self.norm = nn.Identity()
        fold_affine_before(self.k, scale, shift)
        fold_affine_before(self.v, scale, shift)


class NextTransformerBlock(nn.Module):
    """Next Transformer Block (NTB): self-attention on
    ``round32(0.75 * out_channels)`` channels, convolutional attention on a
    projection of the result to the remaining channels, the two
    concatenated (attention channels first) and followed by an MLP."""

    def __init__(self, in_channels: int, out_channels: int, stride: int,
                 sr_ratio: int, drop_path: float, drop: float,
                 attn_drop: float, norm_cfg: dict, mlp_ratio: float = 2.):
        super().__init__()
        attn_channels = make_divisible(
            int(out_channels * MIX_BLOCK_RATIO), 32)
        conv_channels = out_channels - attn_channels
        self.patch_embed = PatchEmbed(in_channels, attn_channels, stride,
                                      norm_cfg)
        self.norm1 = _norm(norm_cfg, attn_channels)
        self.e_mhsa = EfficientAttention(attn_channels, sr_ratio, attn_drop,
                                         drop, norm_cfg)
        self.mhsa_path_dropout = DropPath(drop_path * MIX_BLOCK_RATIO)
        self.projection = PatchEmbed(attn_channels, conv_channels, 1,
                                     norm_cfg)
        self.mhca = ConvAttention(conv_channels, norm_cfg)
        self.mhca_path_dropout = DropPath(drop_path * (1 - MIX_BLOCK_RATIO))
        self.norm2 = _norm(norm_cfg, out_channels)
        self.mlp = ConvMlp(out_channels, mlp_ratio, drop)
        self.mlp_path_dropout = DropPath(drop_path)

    @staticmethod
    def _tokens(x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, H * W, C), row-major; a view for a
        channels-last ``x``."""
        batch, channels = x.shape[:2]
        return x.permute(0, 2, 3, 1).reshape(batch, -1, channels)

    @staticmethod
    def _add_tokens(x: torch.Tensor,
                    tokens: torch.Tensor,
                    overwrite: bool = False) -> torch.Tensor:
        """``x + tokens`` laid out as a map; the sum keeps ``x``'s layout
        and is written over ``x`` when ``overwrite``."""
        batch, channels, height, width = x.shape
        tokens = tokens.reshape(batch, height, width,
                                channels).permute(0, 3, 1, 2)
        return x.add_(tokens) if overwrite else x + tokens

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        tokens = self.e_mhsa(self._tokens(self.norm1(x)))
        x = self._add_tokens(x, self.mhsa_path_dropout(tokens))
        out = self.projection(x)
        out = out + self.mhca_path_dropout(self.mhca(out))
        x = torch.cat([x, out], dim=1)
        return x + self.mlp_path_dropout(self.mlp(self.norm2(x)))

    def forward_inference(self,
                          x: torch.Tensor,
                          fused_kernel: bool,
                          overwrite: bool = False) -> torch.Tensor:
        """``self(x)``; with ``overwrite`` the caller gives up ``x`` and
        its memory may be reused."""
        y = self.patch_embed.forward_inference(x, fused_kernel)
        tokens = self.e_mhsa.forward_inference(self._tokens(y), self.norm1,
                                               fused_kernel)
        y = self._add_tokens(y, tokens, overwrite=overwrite or y is not x)
        out = self.projection.forward_inference(y, fused_kernel)
        out = self.mhca.forward_inference(
            out, fused_kernel, overwrite=out is not y)
        y = torch.cat([y, out], dim=1)
        return self.mlp.forward_inference(
            y, self.norm2, fused_kernel, overwrite=True)

    def switch_to_deploy(self) -> None:
        self.e_mhsa.fold_pre_norm(self.norm1)
        self.norm1 = nn.Identity()
        fold_affine_before(self.mlp.conv1, *bn_affine(self.norm2))
        self.norm2 = nn.Identity()
        self.patch_embed.switch_to_deploy()
        self.projection.switch_to_deploy()
        self.mhca.switch_to_deploy()


@MODELS.register_module()
class NextViT(BaseModule):
    """Next-ViT backbone emitting the four pyramid features.

    One module serves detection and segmentation: the released segmentation
    models normalise the running feature map at the end of every stage
    (``with_extra_norm=True``), the detection models do not.

    Args:
        arch (str | dict): ``'small'``, ``'base'`` or ``'large'`` (or
            ``'s'``, ``'b'``, ``'l'``), or a dict with exactly the keys
            ``stem_channels`` (three ints), ``depths`` (four ints; the third a
            multiple of 5) and ``drop_path_rate`` (float). Defaults to
            ``'small'``.
        in_channels (int): Channels of the input image. Defaults to 3.
        out_indices (Sequence[int]): Stages whose output is returned, in
            0..3 (negative indices count from the end). Defaults to
            ``(0, 1, 2, 3)``.
        frozen_stages (int): -1 freezes nothing, 0 freezes the stem, k > 0
            freezes the stem and stages 1..k (parameters stop requiring
            gradients and their norms stay in eval mode). Defaults to -1.
        norm_eval (bool): Keep every batch norm of the backbone in eval mode
            while training. Defaults to False.
        with_extra_norm (bool): Normalise the feature map at the end of each
            stage, as the released segmentation models do (stage 4 uses
            ``norm``, the classifier norm of the ImageNet checkpoints).
            Defaults to False.
        with_cp (bool): Gradient checkpointing per block (non-reentrant),
            trading compute for activation memory. Defaults to False.
        drop_path_rate (float, optional): Stochastic depth rate, increased
            linearly over all blocks. Defaults to None, the arch's rate
            (0.1 small, 0.2 base and large).
        drop_rate (float): Dropout in the MLPs and after the attention
            projection. Defaults to 0.
        attn_drop_rate (float): Dropout of the attention weights.
            Defaults to 0.
        deploy (bool): Build the model in the form ``switch_to_deploy()``
            gives (norms folded into the neighbouring layers), so that a
            checkpoint saved after deploying loads into a model built from
            a config. A ``Pretrained`` file of the ordinary (unfolded) form
            is folded as it loads. Defaults to False.
        norm_cfg (dict): Norm of every layer. Defaults to
            ``dict(type='BN', requires_grad=True)``; segmentation configs use
            ``SyncBN``.
        init_cfg (dict | list[dict], optional): Initialisation. With
            ``dict(type='Pretrained', checkpoint=PATH)`` the weights are read
            from PATH in any supported layout (see
            :mod:`mmnextvit.models.checkpoint_layouts`).
            Defaults to truncated-normal convolutions and linears (std 0.02)
            and unit norms.

    Inference. In eval mode without autograd (``torch.no_grad()``) the
    forward takes a faster path that computes the same function: every batch
    norm is folded into its neighbouring convolution or linear map per call,
    the feature maps are kept channels-last, ReLU and residual adds are fused
    into oneDNN convolutions on the CPU (the sums written over the running
    map, the MLPs of large maps run in strips of rows), and the attention
    runs through ``F.scaled_dot_product_attention``, or on the CPU with 128
    keys or more as two grouped oneDNN convolutions around an exact softmax.
    ``switch_to_deploy()`` folds the norms once and for all. Training,
    autograd in eval mode and norms other than batch norm take the plain
    module path.

    Example:
        >>> import torch
        >>> from mmnextvit.models import NextViT
        >>> model = NextViT(arch='small').eval()
        >>> for feat in model(torch.rand(1, 3, 224, 224)):
        ...     print(tuple(feat.shape))
        (1, 96, 56, 56)
        (1, 256, 28, 28)
        (1, 512, 14, 14)
        (1, 1024, 7, 7)
    """

    arch_settings: Dict[str, dict] = {
        'small': dict(
            stem_channels=(64, 32, 64),
            depths=(3, 4, 10, 3),
            drop_path_rate=0.1),
        'base': dict(
            stem_channels=(64, 32, 64),
            depths=(3, 4, 20, 3),
            drop_path_rate=0.2),
        'large': dict(
            stem_channels=(64, 32, 64),
            depths=(3, 4, 30, 3),
            drop_path_rate=0.2),
    }
    arch_aliases = {'s': 'small', 'b': 'base', 'l': 'large'}
    out_channels = (96, 256, 512, 1024)
    num_stages = 4

    def __init__(self,
                 arch: Union[str, dict] = 'small',
                 in_channels: int = 3,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_extra_norm: bool = False,
                 with_cp: bool = False,
                 drop_path_rate: Optional[float] = None,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 deploy: bool = False,
                 norm_cfg: dict = dict(type='BN', requires_grad=True),
                 init_cfg: Optional[Union[dict, List[dict]]] = [
                     dict(
                         type='TruncNormal',
                         layer=['Conv2d', 'Linear'],
                         std=.02,
                         bias=0.),
                     dict(
                         type='Constant',
                         layer=['_BatchNorm'],
                         val=1.,
                         bias=0.)
                 ]):
        super().__init__(init_cfg=init_cfg)
        self.arch = self._parse_arch(arch)
        self.in_channels = in_channels
        self.out_indices = self._parse_out_indices(out_indices)
        if not (isinstance(frozen_stages, int)
                and -1 <= frozen_stages <= self.num_stages):
            raise ValueError(
                f'Next-ViT: frozen_stages={frozen_stages!r} is out of range; '
                f'use -1 (nothing frozen), 0 (the stem) or 1..'
                f'{self.num_stages} (the stem and stages 1..k).')
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_extra_norm = with_extra_norm
        self.with_cp = with_cp
        self.norm_cfg = norm_cfg
        self.deploy = False
        if drop_path_rate is None:
            drop_path_rate = self.arch['drop_path_rate']
        self.drop_path_rate = drop_path_rate

        depths = self.arch['depths']
        stem_channels = self.arch['stem_channels']
        self.stem = nn.Sequential(
            ConvNormReLU(in_channels, stem_channels[0], 2, norm_cfg),
            ConvNormReLU(stem_channels[0], stem_channels[1], 1, norm_cfg),
            ConvNormReLU(stem_channels[1], stem_channels[2], 1, norm_cfg),
            ConvNormReLU(stem_channels[2], stem_channels[2], 2, norm_cfg),
        )

        drop_path_rates = [
            x.item() for x in torch.linspace(0, drop_path_rate, sum(depths))
        ]
        blocks = []
        channels = stem_channels[-1]
        for stage, depth in enumerate(depths):
            for index, (block_type, width) in enumerate(
                    self._stage_plan(stage, depth)):
                stride = STAGE_STRIDES[stage] if index == 0 else 1
                drop_path = drop_path_rates[len(blocks)]
                if block_type == 'NCB':
                    block = NextConvBlock(channels, width, stride, drop_path,
                                          drop_rate, norm_cfg)
                else:
                    block = NextTransformerBlock(channels, width, stride,
                                                 SR_RATIOS[stage], drop_path,
                                                 drop_rate, attn_drop_rate,
                                                 norm_cfg)
                blocks.append(block)
                channels = width
        self.features = nn.Sequential(*blocks)
        # Index of the last block of every stage.
        self.stage_ends = tuple(
            sum(depths[:stage + 1]) - 1 for stage in range(self.num_stages))

        if with_extra_norm:
            self.extra_norm_list = nn.Sequential(*[
                _norm(norm_cfg, self.out_channels[stage])
                for stage in range(self.num_stages - 1)
            ])
            self.norm = _norm(norm_cfg, self.out_channels[-1])

        self._freeze_stages()
        if deploy:
            self.switch_to_deploy()

    # ------------------------------------------------------------------
    # Construction helpers
    # ------------------------------------------------------------------
    @classmethod
    def _parse_arch(cls, arch: Union[str, dict]) -> dict:
        if isinstance(arch, str):
            name = cls.arch_aliases.get(arch.lower(), arch.lower())
            if name not in cls.arch_settings:
                valid = sorted(cls.arch_settings) + sorted(cls.arch_aliases)
                raise ValueError(
                    f'Next-ViT: unknown arch {arch!r}; use one of {valid} or '
                    f'a dict with the keys {sorted(cls._arch_keys())}.')
            return dict(cls.arch_settings[name])
        if not isinstance(arch, dict):
            raise TypeError(
                f'Next-ViT: arch must be a name or a dict, got '
                f'{type(arch).__name__}.')
        keys = cls._arch_keys()
        if set(arch) != keys:
            missing = sorted(keys - set(arch))
            extra = sorted(set(arch) - keys)
            raise ValueError(
                f'Next-ViT: the arch dict must have exactly the keys '
                f'{sorted(keys)}; missing {missing}, unknown {extra}.')
        stem, depths = arch['stem_channels'], arch['depths']
        if not (isinstance(stem, (list, tuple)) and len(stem) == 3
                and all(isinstance(c, int) and c > 0 for c in stem)):
            raise ValueError(
                f'Next-ViT: arch stem_channels must be three positive ints, '
                f'got {stem!r}.')
        if not (isinstance(depths, (list, tuple)) and len(depths) == 4
                and all(isinstance(d, int) and d > 0 for d in depths)
                and depths[2] % 5 == 0):
            raise ValueError(
                f'Next-ViT: arch depths must be four positive ints with the '
                f'third a multiple of 5 (stage 3 repeats 4 NCB + 1 NTB), got '
                f'{depths!r}.')
        rate = arch['drop_path_rate']
        if not (isinstance(rate, (int, float)) and 0 <= rate < 1):
            raise ValueError(
                f'Next-ViT: arch drop_path_rate must be in [0, 1), got '
                f'{rate!r}.')
        return dict(
            stem_channels=tuple(stem),
            depths=tuple(depths),
            drop_path_rate=float(rate))

    @classmethod
    def _arch_keys(cls) -> set:
        return set(next(iter(cls.arch_settings.values())))

    def _parse_out_indices(self, out_indices: Sequence[int]) -> Tuple[int]:
        if isinstance(out_indices, int):
            out_indices = (out_indices, )
        parsed = []
        for index in out_indices:
            if not (isinstance(index, int)
                    and -self.num_stages <= index < self.num_stages):
                raise ValueError(
                    f'Next-ViT: out_indices={tuple(out_indices)!r} has '
                    f'{index!r}, which is not a stage; use indices in '
                    f'0..{self.num_stages - 1}.')
            parsed.append(index % self.num_stages)
        if not parsed or len(set(parsed)) != len(parsed):
            raise ValueError(
                f'Next-ViT: out_indices={tuple(out_indices)!r} must name '
                f'each returned stage once; use indices in '
                f'0..{self.num_stages - 1}.')
        return tuple(sorted(parsed))

    @classmethod
    def _stage_plan(cls, stage: int, depth: int) -> List[Tuple[str, int]]:
        """(block type, output width) of every block of a stage: the Next
        Hybrid Strategy of the paper."""
        if stage == 0:
            return [('NCB', 96)] * depth
        if stage == 2:
            return ([('NCB', 384)] * 4 + [('NTB', 512)]) * (depth // 5)
        conv_width = {1: 192, 3: 768}[stage]
        return [('NCB', conv_width)] * (depth - 1) + [
            ('NTB', cls.out_channels[stage])
        ]

    # ------------------------------------------------------------------
    # Weights
    # ------------------------------------------------------------------
    def init_weights(self) -> None:
        init_cfg = self.init_cfg
        if isinstance(init_cfg, dict) and init_cfg.get('type') == 'Pretrained':
            self._load_pretrained(init_cfg['checkpoint'],
                                  init_cfg.get('prefix'))
            self._is_init = True
            return
        super().init_weights()

    def _load_pretrained(self, path: str, prefix: Optional[str]) -> None:
        from mmnextvit.engine.safe_loading import CheckpointError
        from mmnextvit.models.checkpoint_layouts import load_backbone_weights
        if not self.deploy:
            load_backbone_weights(self, path, prefix=prefix)
            return
        try:  # a file saved after switch_to_deploy()
            load_backbone_weights(self, path, prefix=prefix)
        except CheckpointError:
            # A file of the ordinary form: load it into an unfolded twin and
            # fold that, as switch_to_deploy() would have.
            twin = NextViT(
                arch=self.arch,
                in_channels=self.in_channels,
                with_extra_norm=self.with_extra_norm,
                norm_cfg=self.norm_cfg,
                init_cfg=None)
            load_backbone_weights(twin, path, prefix=prefix)
            twin.eval().switch_to_deploy()
            self.load_state_dict(twin.state_dict())

    # ------------------------------------------------------------------
    # Training behaviour
    # ------------------------------------------------------------------
    def _frozen_modules(self) -> List[nn.Module]:
        if self.frozen_stages < 0:
            return []
        modules = [self.stem]
        if self.frozen_stages > 0:
            last = self.stage_ends[self.frozen_stages - 1]
            modules += list(self.features[:last + 1])
            if self.with_extra_norm:
                modules += list(
                    self.extra_norm_list[:min(self.frozen_stages, 3)])
                if self.frozen_stages == self.num_stages:
                    modules.append(self.norm)
        return modules

    def _freeze_stages(self) -> None:
        for module in self._frozen_modules():
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> 'NextViT':
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self

    def switch_to_deploy(self) -> None:
        """Fold the batch norms into the neighbouring linear maps for
        inference: each pre-norm into the layer that consumes it, and each
        convolution's norm into the convolution. The extra norms of the
        segmentation mode produce the returned features and stay."""
        if self.deploy:
            return
        for unit in self.stem:
            unit.switch_to_deploy()
        for block in self.features:
            block.switch_to_deploy()
        if self.inference_prepack:
            for module in self.modules():
                if isinstance(module, (nn.Conv2d, nn.Linear)):
                    kernels.enable_prepack(module)
        self.deploy = True

    # ------------------------------------------------------------------
    # Forward
    # ------------------------------------------------------------------
    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f'Next-ViT expects an (N, {self.in_channels}, H, W) image '
                f'batch, got shape {tuple(x.shape)}; pass images with '
                f'{self.in_channels} channels in NCHW layout.')
        height, width = x.shape[-2:]
        for stage, sr_ratio in enumerate(SR_RATIOS):
            if stage == 0 or sr_ratio == 1:
                continue
            stride = 2**(stage + 2)
            tokens = math.ceil(height / stride) * math.ceil(width / stride)
            if tokens < sr_ratio**2:
                raise ValueError(
                    f'Next-ViT cannot take a {height}x{width} input: the '
                    f'attention of stage {stage + 1} averages '
                    f'{sr_ratio**2} tokens into one key but this input gives '
                    f'only {tokens} at stride {stride}; use an input of at '
                    f'least 32x32 (ceil(H/8)*ceil(W/8) >= 16 and '
                    f'ceil(H/16)*ceil(W/16) >= 4).')

    # The inference path runs in channels-last layout: 1x1 convolutions
    # become plain matrix products over contiguous pixels and the attention
    # tokens are views of the feature map. Measured faster on the CPU at
    # 224x224, 512x512 and 800x1216 (docs/benchmarks.md). The features come
    # back in the layout of the input: mmcv's CPU RoIAlign, fed by mmdet's
    # FPN, reads NCHW memory whatever the strides (a channels-last map gives
    # wrong values), so an NCHW input must give NCHW features.
    inference_channels_last: bool = True
    # After switch_to_deploy(), keep each convolution's and linear's weight
    # also in the blocked layout oneDNN's CPU kernel reads (see
    # mmnextvit.ops.cpu_kernels.enable_prepack): faster at every size, most
    # at small inputs (224x224), for one more copy of those weights in
    # memory. Set to False before switch_to_deploy() to save that memory.
    inference_prepack: bool = True

    def _inference_ready(self) -> bool:
        """Whether the inference path computes what the modules would: no
        autograd, everything in eval mode, and every norm a batch norm with
        running statistics (or already folded)."""
        if torch.is_grad_enabled():
            return False
        for module in self.modules():
            if isinstance(module, (nn.GroupNorm, nn.LayerNorm, _InstanceNorm)):
                return False
            # The modules that act differently in training; the identities
            # that replace folded norms may be left in training mode.
            if module.training and isinstance(
                    module, (_BatchNorm, nn.Dropout, DropPath)):
                return False
            if isinstance(module, _BatchNorm) and module.running_var is None:
                return False
        return True

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        if not (torch.jit.is_tracing() or torch.jit.is_scripting()):
            self._check_input(x)
        inference = self._inference_ready()
        amp_dtype = autocast_dtype(x.device.type)
        if inference and amp_dtype is not None:
            # The inference path folds the norms per call and calls oneDNN
            # kernels that autocast does not cover: it runs with autocast
            # off, on maps in autocast's dtype, and the kernels take the
            # weights in the maps' dtype (what autocast gives a convolution).
            with torch.autocast(x.device.type, enabled=False):
                return self._forward(x.to(amp_dtype), inference)
        return self._forward(x, inference)

    def _forward(self, x: torch.Tensor,
                 inference: bool) -> Tuple[torch.Tensor, ...]:
        fused_kernel = inference and kernels.fused_kernels_usable(x)
        restore_layout = False
        if (inference and self.inference_channels_last
                and x.is_contiguous()):
            x = x.contiguous(memory_format=torch.channels_last)
            restore_layout = True
        for unit in self.stem:
            x = (unit.forward_inference(x, fused_kernel)
                 if inference else unit(x))
        outs = []
        stage = 0
        # Whether the running map is ours to overwrite: not once returned.
        owned = True
        for index, block in enumerate(self.features):
            if inference:
                x = block.forward_inference(x, fused_kernel, overwrite=owned)
                owned = True
            elif self.with_cp and self.training:
                x = cp.checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
            if index == self.stage_ends[stage]:
                if self.with_extra_norm:
                    x = (self.extra_norm_list[stage]
                         if stage < self.num_stages - 1 else self.norm)(
                             x)
                if stage in self.out_indices:
                    outs.append(
                        kernels.to_contiguous(x) if restore_layout else x)
                    owned = False
                if stage == self.out_indices[-1]:
                    break
                stage += 1
        return tuple(outs)
