# Copyright (c) mmnextvit contributors. All rights reserved.
"""Batch-norm folding for inference: the algebra shared by
``switch_to_deploy()`` (folds once, in place) and the eval-mode inference
path of the backbone (folds per call, leaving the modules as they are).

A norm that follows a convolution folds into it with torch's own
:func:`torch.nn.utils.fusion.fuse_conv_bn_weights`. A norm that comes
*before* a linear map (Next-ViT's pre-norms, and the norm of the pooled keys
and values, which commutes with the average pool) has no torch helper:
:func:`fold_before` scales the layer's input columns and moves the shift
into its bias.
"""
from typing import Optional, Tuple, Union

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils.fusion import fuse_conv_bn_weights

__all__ = [
    'Affine', 'bn_affine', 'affine_of', 'chain', 'fold_before', 'fold_after',
    'fold_affine_before', 'fold_bn_after'
]

# A per-channel map ``x -> scale * x + shift``, or None for the identity
# (a norm already folded away).
Affine = Optional[Tuple[torch.Tensor, torch.Tensor]]


def bn_affine(bn: _BatchNorm) -> Tuple[torch.Tensor, torch.Tensor]:
    """The per-channel ``(scale, shift)`` an inference-mode batch norm
    applies, in at least fp32: in a model cast to bf16 or fp16 the
    statistics are rounded already, folding them in that precision would
    round twice (``rsqrt`` of a bf16 variance alone is off by up to 2**-8).
    """
    dtype = torch.promote_types(bn.running_var.dtype, torch.float32)
    scale = torch.rsqrt(bn.running_var.to(dtype) + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.to(dtype)
    shift = -bn.running_mean.to(dtype) * scale
    if bn.bias is not None:
        shift = shift + bn.bias.to(dtype)
    return scale, shift


def affine_of(norm: nn.Module) -> Affine:
    """:func:`bn_affine` of ``norm``, None when it was folded away (an
    ``nn.Identity``)."""
    return None if isinstance(norm, nn.Identity) else bn_affine(norm)


def chain(first: Affine, second: Affine) -> Affine:
    """The affine map ``second(first(x))``."""
    if first is None or second is None:
        return second if first is None else first
    return second[0] * first[0], second[0] * first[1] + second[1]


def _in_dtype(dtype: torch.dtype, weight: torch.Tensor,
              bias: Optional[torch.Tensor]):
    """``weight`` and ``bias`` in ``dtype`` (no copy when already in it)."""
    return weight.to(dtype), None if bias is None else bias.to(dtype)


def fold_before(weight: torch.Tensor, bias: Optional[torch.Tensor],
                affine: Affine) -> Tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of a linear map (a ``Linear`` or ungrouped 1x1
    convolution) that absorbs the per-input-channel ``affine`` before it,
    computed in the affine map's dtype (see :func:`bn_affine`)."""
    if affine is None:
        return weight, bias
    scale, shift = affine
    weight, bias = _in_dtype(scale.dtype, weight, bias)
    extra = weight.reshape(weight.shape[0], weight.shape[1]) @ shift
    bias = extra if bias is None else bias + extra
    scale = scale.reshape((1, -1) + (1, ) * (weight.dim() - 2))
    return weight * scale, bias


def fold_after(weight: torch.Tensor, bias: Optional[torch.Tensor],
               affine: Affine) -> Tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of a convolution that absorbs the per-output-channel
    ``affine`` after it (the per-call form of :func:`fold_bn_after`), in the
    affine map's dtype."""
    if affine is None:
        return weight, bias
    scale, shift = affine
    weight, bias = _in_dtype(scale.dtype, weight, bias)
    bias = shift if bias is None else bias * scale + shift
    return weight * scale.reshape(-1, 1, 1, 1), bias


@torch.no_grad()
def _set_weight_and_bias(layer: Union[nn.Conv2d, nn.Linear],
                         weight: torch.Tensor, bias: torch.Tensor) -> None:
    layer.weight.copy_(weight)
    if layer.bias is None:
        layer.bias = nn.Parameter(
            bias.detach().to(layer.weight.dtype, copy=True))
    else:
        layer.bias.copy_(bias)


@torch.no_grad()
def fold_affine_before(layer: Union[nn.Conv2d, nn.Linear], scale: torch.Tensor,
                       shift: torch.Tensor) -> None:
    """Fold ``x -> scale * x + shift`` (per input channel) into the linear
    map ``layer`` (a ``Linear`` or an ungrouped 1x1 ``Conv2d``) that follows
    it, in place."""
    if isinstance(layer, nn.Conv2d):
        assert layer.groups == 1 and layer.kernel_size == (1, 1)
    _set_weight_and_bias(
        layer, *fold_before(layer.weight, layer.bias, (scale, shift)))


@torch.no_grad()
def fold_bn_after(conv: nn.Conv2d, bn: _BatchNorm) -> None:
    """Fold the inference-mode batch norm that follows ``conv`` into the
    convolution, in place (torch's ``fuse_conv_bn_weights``)."""
    weight, bias = fuse_conv_bn_weights(conv.weight, conv.bias,
                                        bn.running_mean, bn.running_var,
                                        bn.eps, bn.weight, bn.bias)
    _set_weight_and_bias(conv, weight, bias)
