# Copyright (c) mmnextvit contributors. All rights reserved.
"""FLOP counting with MMEngine's ``FlopAnalyzer``, completed by a rule for
fused attention (``F.scaled_dot_product_attention``, which it does not
count); shared by ``get_flops.py`` and ``benchmark.py``."""
from typing import Any, List, Tuple

__all__ = ['attention_flop_jit', 'complexity', 'total_flops']


def attention_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """Multiply-adds of ``scaled_dot_product_attention(q, k, v)``: the
    products ``q @ k^T`` and ``attn @ v``."""
    from mmengine.analysis.jit_handles import get_shape
    q_shape, k_shape, v_shape = (get_shape(v) for v in inputs[:3])
    batch = 1
    for size in q_shape[:-2]:
        batch *= size
    queries, dim = q_shape[-2:]
    keys = k_shape[-2]
    return batch * queries * keys * (dim + v_shape[-1])


def complexity(module, inputs) -> Tuple[int, int, int]:
    """(FLOPs, parameters, FLOPs of attention matrix products) of
    ``module`` called on ``inputs``."""
    from mmengine.analysis import FlopAnalyzer, parameter_count
    analyzer = FlopAnalyzer(module, inputs)
    analyzer.set_op_handle('aten::scaled_dot_product_attention',
                           attention_flop_jit)
    # Additions, activations, RoIAlign and NMS are not counted (see the
    # conventions above); the per-operator warnings would bury the table.
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    by_operator = analyzer.by_operator()
    attention = (
        by_operator['matmul'] + by_operator['scaled_dot_product_attention'])
    return analyzer.total(), parameter_count(module)[''], attention


def total_flops(module, inputs) -> float:
    """FLOPs of ``module(*inputs)`` as the benchmarks report them: the
    multiply-adds of :func:`complexity` times two (one multiply-add = 2
    FLOPs), counted without autograd."""
    import torch
    with torch.no_grad():
        return 2. * complexity(module, inputs)[0]
