# Copyright (c) mmnextvit contributors. All rights reserved.
"""Hand-written CPU kernels of the backbone's eval-mode inference path.

The backbone calls only the interface below; everything else in this module
is how it is served. Each function computes what the standard operators
compute (within float rounding) and falls back to them where its kernel is
not usable.

- :func:`fused_kernels_usable`: whether the oneDNN kernels may serve an
  input (on the CPU in fp32, or bf16 / fp16 where the CPU has oneDNN
  kernels for them; oneDNN on; no tracing, scripting or compiling: graph
  capture must see standard operators only).
- :func:`conv2d`: a convolution, then ReLU or a residual add, fused into
  one oneDNN kernel (the add optionally written over the residual).
- :func:`linear`: ``F.linear`` on oneDNN's kernel.
- :func:`attention_usable` / :func:`attention`: multi-head attention as two
  grouped oneDNN convolutions around an exact softmax.
- :func:`in_place_add_available`, :func:`even_parts`: what a caller needs
  to run work in strips.
- :func:`enable_prepack`: keep a deployed layer's weight in oneDNN's
  blocked layout between calls.
- :func:`to_contiguous`: a channels-last map copied back to NCHW, in
  cache-sized blocks.

They rest on private ``torch.ops.mkldnn`` operators (the kernels torch's own
CPU graph optimisations emit); a build without one of them takes the
standard path.
"""
import functools
import math
import weakref
from typing import Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmnextvit.compat.torch import is_compiling

__all__ = [
    'fused_kernels_usable', 'conv2d', 'linear', 'attention_usable',
    'attention', 'in_place_add_available', 'even_parts', 'enable_prepack',
    'to_contiguous'
]


def _onednn_op(name: str):
    """``torch.ops.mkldnn.<name>`` if this build has it, else None."""
    try:
        return getattr(torch.ops.mkldnn, name)
    except (AttributeError, RuntimeError):
        return None


# oneDNN convolution with a fused ReLU or residual add (the kernel torch's
# own CPU graph optimisations emit).
_FUSED_CONV = _onednn_op('_convolution_pointwise')
# The same with the residual add done in place: the sum is written over the
# residual, so no output buffer is allocated.
_FUSED_CONV_ADD_ = _onednn_op('_convolution_pointwise_')
# oneDNN's reorder of a convolution weight into the blocked layout its
# kernel reads for a given input shape.
_REORDER_WEIGHT = _onednn_op('_reorder_convolution_weight')
# The same for the weight of oneDNN's linear kernel and a number of rows.
_REORDER_LINEAR_WEIGHT = _onednn_op('_reorder_linear_weight')
# Deployed convolutions and linears -> {key: weight in oneDNN's blocked
# layout}. Held outside the modules so that copying, pickling or saving a
# model never meets these opaque tensors; an entry goes with its module.
_PACKED_WEIGHTS: 'weakref.WeakKeyDictionary[nn.Module, dict]' = \
    weakref.WeakKeyDictionary()
# Input shapes a layer keeps a reordered weight for: an MLP run in strips
# (see ConvMlp) meets two, a full strip and the last one.
_PACKED_SHAPES = 2


def _packed_weight(layer: Union[nn.Conv2d, nn.Linear], weight: torch.Tensor,
                   x: torch.Tensor) -> torch.Tensor:
    """``weight`` in the layout oneDNN's kernel reads for inputs shaped like
    ``x`` (a channels-last map for a convolution, a 2-d row matrix for a
    linear), made once and reused while the input shape and the weight stay
    the same; ``weight`` itself when ``layer`` was not marked by
    ``switch_to_deploy()``, the weight is not the module's own or a
    convolution's ``x`` is not channels-last.

    Without it the kernel reorders the weight on every call: measured on 2
    cores, a 1x1 convolution of 1024 -> 3072 channels at 7x7 takes 1.25 ms
    with the plain weight and 0.62 ms with the reordered one, and the 192 ->
    192 linear of a stage-2 attention at 800x1216 (15200 rows) 2.75 against
    2.16 ms. The layout depends on the input shape (a weight reordered for
    7x7 runs 5x slower at 25x38), hence the shape in the key; a new shape
    costs one reorder, what every call costs without the cache. Same
    arithmetic, same output.
    """
    linear = isinstance(layer, nn.Linear)
    reorder = _REORDER_LINEAR_WEIGHT if linear else _REORDER_WEIGHT
    # A convolution only in the channels-last layout of the inference path:
    # with an NCHW input, a packed weight makes the kernel return a
    # channels-last output.
    if (reorder is None or weight is not layer.weight
            or not getattr(layer, 'prepack_weight', False)
            or not (linear
                    or x.is_contiguous(memory_format=torch.channels_last))):
        return weight
    key = (tuple(x.shape), x.stride(), weight.data_ptr(), weight._version)
    cached = _PACKED_WEIGHTS.setdefault(layer, {})
    packed = cached.get(key)
    if packed is None:
        if len(cached) >= _PACKED_SHAPES:
            del cached[next(iter(cached))]
        if linear:
            packed = reorder(weight, x.shape[0])
        else:
            packed = reorder(weight, list(layer.padding), list(layer.stride),
                             list(layer.dilation), layer.groups, list(x.shape))
        cached[key] = packed
    return packed


def _onednn_dtype_supported(dtype: torch.dtype) -> bool:
    """Whether this CPU runs oneDNN's kernels in ``dtype``: always fp32;
    bf16 and fp16 only where oneDNN has hardware kernels for them (AVX-512
    BF16/FP16, AMX, AVX-NE-CONVERT): elsewhere it refuses them, and torch's
    standard operators serve those dtypes."""
    if dtype == torch.float32:
        return True
    check = {
        torch.bfloat16: '_is_mkldnn_bf16_supported',
        torch.float16: '_is_mkldnn_fp16_supported'
    }.get(dtype)
    supported = _onednn_op(check) if check else None
    return bool(supported is not None and supported())


def fused_kernels_usable(x: torch.Tensor) -> bool:
    """Whether :func:`conv2d` may call the oneDNN fused kernel for ``x``: a
    CPU tensor in a dtype oneDNN serves on this CPU (fp32; bf16 / fp16 with
    hardware support), oneDNN enabled, and no graph capture (tracing, export
    or compilation), which should see standard operators only. The caller
    gives the kernels weights in ``x``'s dtype (see :func:`conv2d`)."""
    # Graph capture first: the oneDNN queries after it are calls that
    # torch.compile cannot trace (each would break the graph).
    return (not is_compiling() and not torch.jit.is_tracing()
            and not torch.jit.is_scripting() and _FUSED_CONV is not None
            and x.device.type == 'cpu' and torch.backends.mkldnn.enabled
            and torch.backends.mkldnn.is_available()
            and _onednn_dtype_supported(x.dtype))


def _as_dtype_of(x: torch.Tensor, weight: torch.Tensor,
                 bias: Optional[torch.Tensor]):
    """``weight`` and ``bias`` in ``x``'s dtype: the oneDNN kernels and
    torch's standard operators take one dtype for all operands, while the
    inference path folds the norms in at least fp32 and, under autocast,
    runs fp32 parameters on reduced-precision maps. No copy when the dtypes
    agree (then ``weight`` stays the module's own, which prepacking needs).
    """
    if weight.dtype != x.dtype:
        weight = weight.to(x.dtype)
    if bias is not None and bias.dtype != x.dtype:
        bias = bias.to(x.dtype)
    return weight, bias


def conv2d(x: torch.Tensor,
           conv: nn.Conv2d,
           weight: torch.Tensor,
           bias: Optional[torch.Tensor],
           relu: bool = False,
           residual: Optional[torch.Tensor] = None,
           fused_kernel: bool = False,
           overwrite_residual: bool = False) -> torch.Tensor:
    """``conv`` with the given parameters, then ReLU or ``residual + y``;
    one pass over the output with the fused kernel, else standard ops.

    With ``overwrite_residual`` the caller gives up ``residual``: the fused
    kernel may then write the sum over it and return it (no new buffer; at
    800x1216 the residual maps of stage 1 are 22 MiB each). ``weight`` and
    ``bias`` are used in ``x``'s dtype. Inference only (no autograd)."""
    weight, bias = _as_dtype_of(x, weight, bias)
    if fused_kernel and (residual is None or _same_layout(residual, x)):
        args = (_packed_weight(conv, weight, x), bias, list(conv.padding),
                list(conv.stride), list(conv.dilation), conv.groups)
        if residual is None:
            return _FUSED_CONV(x, *args, 'relu' if relu else 'none', [], '')
        assert not relu
        if overwrite_residual and _FUSED_CONV_ADD_ is not None:
            return _FUSED_CONV_ADD_.binary(residual, x, *args, 'add', None,
                                           None, [], None)
        return _FUSED_CONV.binary(x, residual, *args, 'add', None, None, [],
                                  None)
    y = F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation,
                 conv.groups)
    if relu:
        y = y.relu_()
    if residual is not None:
        y = residual + y
    return y


# oneDNN's linear kernel (torch's CPU graph optimisations emit it).
_ONEDNN_LINEAR = _onednn_op('_linear_pointwise')


def linear(x: torch.Tensor,
           layer: nn.Linear,
           weight: torch.Tensor,
           bias: Optional[torch.Tensor],
           fused_kernel: bool = False) -> torch.Tensor:
    """``F.linear`` over the last dimension of ``x`` with the given
    parameters of ``layer``; with ``fused_kernel`` (the conditions of
    :func:`fused_kernels_usable`) on oneDNN's kernel, with the weight packed
    for it after ``switch_to_deploy()`` (:func:`_packed_weight`).

    On the CPU ``F.linear`` runs MKL's matrix product, which on the AMD
    machine of docs/benchmarks.md reaches about half of oneDNN's rate: the
    q/k/v/proj linears of a stage-3 attention at 800x1216 (3800 tokens,
    512 channels) take half the time on oneDNN. ``weight`` and ``bias``
    are used in ``x``'s dtype. Inference only."""
    weight, bias = _as_dtype_of(x, weight, bias)
    if not fused_kernel or _ONEDNN_LINEAR is None:
        return F.linear(x, weight, bias)
    flat = x.reshape(-1, x.shape[-1])
    out = _ONEDNN_LINEAR(flat, _packed_weight(layer, weight, flat), bias,
                         'none', [], '')
    return out.reshape(x.shape[:-1] + (weight.shape[0], ))


def even_parts(count: int, item_bytes: int, budget: int) -> int:
    """Items per part when ``count`` items of ``item_bytes`` each are cut
    into the fewest parts of at most about ``budget`` bytes, as even as
    possible; ``count`` when they fit in one part."""
    parts = max(1, math.ceil(count * item_bytes / budget))
    return math.ceil(count / parts)


# Keys per head from which the inference path runs attention on oneDNN
# convolutions (below, fused SDPA is as fast or faster) and the size of the
# score block each step of it holds (keeps a block in the caches).
ONEDNN_ATTENTION_MIN_KEYS = 128
ATTENTION_BLOCK_BYTES = 4 << 20


def attention_usable(q: torch.Tensor, k: torch.Tensor) -> bool:
    """Whether :func:`attention` may serve these queries and keys (the
    conditions of :func:`fused_kernels_usable`, fp32, and enough keys).
    Reduced precision goes to fused SDPA, whose softmax accumulates in fp32;
    this kernel's softmax would round the scores to the maps' dtype."""
    return (_REORDER_WEIGHT is not None and q.dtype == torch.float32
            and fused_kernels_usable(q)
            and k.shape[1] >= ONEDNN_ATTENTION_MIN_KEYS)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
              num_heads: int, scale: float) -> torch.Tensor:
    """Multi-head attention of (B, N, C) queries over (B, M, C) keys and
    values, returning (B, N, C); inference only.

    Both products are grouped 1x1 convolutions, one group per head: the
    queries are a 1 x N image with C channels, the scaled keys the weight of
    ``softmax``'s input (``num_heads * M`` channels), the values the weight
    that maps the probabilities back to C channels. oneDNN's convolutions run
    at about twice the rate of the matrix products inside the fused SDPA
    kernel on the machine of docs/benchmarks.md (head size 32 makes those
    thin); the queries go through in blocks whose scores stay in cache.
    Exact softmax over all keys, so the result is the attention itself, not
    an approximation (within float rounding).
    """
    batch, length, channels = q.shape
    keys = k.shape[1]
    head_dim = channels // num_heads
    block = even_parts(length, num_heads * keys * q.element_size(),
                       ATTENTION_BLOCK_BYTES)
    out = q.new_empty(batch, length, channels)
    conv = functools.partial(
        _FUSED_CONV,
        padding=[0, 0],
        stride=[1, 1],
        dilation=[1, 1],
        groups=num_heads,
        attr='none',
        scalars=[],
        algorithm='')
    for image in range(batch):
        # (heads * M, d, 1, 1): group h holds the scaled keys of head h.
        key_weight = (
            k[image].reshape(keys, num_heads, head_dim).transpose(0, 1) *
            scale).reshape(-1, head_dim, 1, 1)
        # (heads * d, M, 1, 1): group h holds the values of head h.
        value_weight = v[image].reshape(keys, num_heads, head_dim).permute(
            1, 2, 0).reshape(-1, keys, 1, 1)
        packed = {}
        for start in range(0, length, block):
            size = min(block, length - start)
            # Channels-last 1 x size image: a view of the query rows.
            queries = q[image, start:start + size].reshape(
                1, 1, size, channels).permute(0, 3, 1, 2)
            if size not in packed:
                packed[size] = (_REORDER_WEIGHT(key_weight, [0, 0], [1, 1],
                                                [1, 1], num_heads,
                                                [1, channels, 1, size]),
                                _REORDER_WEIGHT(
                                    value_weight, [0, 0], [1, 1], [1, 1],
                                    num_heads, [1, num_heads * keys, 1, size]))
            key_packed, value_packed = packed[size]
            scores = conv(queries, key_packed, None)
            # (size, heads, M) view of the channels-last scores.
            rows = scores.permute(0, 2, 3, 1).reshape(size, num_heads, keys)
            torch.softmax(rows, -1, out=rows)
            out[image,
                start:start + size] = conv(scores, value_packed, None).permute(
                    0, 2, 3, 1).reshape(size, channels)
    return out


# Bytes of a channels-last map copied to NCHW at a time (about a quarter
# of a core's L2 cache).
PLAIN_COPY_BYTES = 512 << 10


def to_contiguous(x: torch.Tensor) -> torch.Tensor:
    """``x.contiguous()`` for a channels-last map, copied a few rows at a
    time: each block of rows is read once while its writes to the C planes
    stay in cache. On the machine of docs/benchmarks.md this halves the
    copy (a 96 x 200 x 304 map: 2.8 against 6.1 ms). Under graph capture
    (tracing, export, compilation) it is ``x.contiguous()``: a loop over
    the rows of the traced size would fix that size in the graph. Off the
    CPU it is ``x.contiguous()`` too: on a GPU each block would be a kernel
    launch of its own."""
    if (x.device.type != 'cpu' or torch.jit.is_tracing()
            or torch.jit.is_scripting() or is_compiling()):
        return x.contiguous()
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    row_bytes = x.shape[0] * x.shape[1] * x.shape[3] * x.element_size()
    rows = max(1, PLAIN_COPY_BYTES // max(row_bytes, 1))
    for top in range(0, x.shape[2], rows):
        out[:, :, top:top + rows].copy_(x[:, :, top:top + rows])
    return out


def _same_layout(residual: torch.Tensor, x: torch.Tensor) -> bool:
    """Whether ``residual`` is dense in the layout oneDNN gives the output
    of a convolution of ``x`` (the fused add reads it in that layout)."""
    if x.is_contiguous():
        return residual.is_contiguous()
    return (x.is_contiguous(memory_format=torch.channels_last)
            and residual.is_contiguous(memory_format=torch.channels_last))


def in_place_add_available() -> bool:
    """Whether :func:`conv2d` can write a residual sum over the residual
    (``overwrite_residual``)."""
    return _FUSED_CONV_ADD_ is not None


def enable_prepack(layer: Union[nn.Conv2d, nn.Linear]) -> None:
    """Let :func:`conv2d` / :func:`linear` keep ``layer``'s weight packed
    for oneDNN between calls (see :func:`_packed_weight`); for deployed
    layers, whose weights no longer change per call."""
    layer.prepack_weight = True
