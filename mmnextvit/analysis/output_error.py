# Copyright (c) mmnextvit contributors. All rights reserved.
"""How far one set of model outputs is from another (PyTorch tensors or
an engine's arrays), as the benchmarks report it."""
from typing import List

__all__ = ['as_arrays', 'relative_error']


def as_arrays(outputs) -> List:
    """The outputs of a model or an engine as fp32 numpy arrays."""
    import numpy as np
    import torch
    if isinstance(outputs, torch.Tensor) or not isinstance(
            outputs, (list, tuple)):
        outputs = [outputs]
    return [
        o.detach().float().cpu().numpy()
        if isinstance(o, torch.Tensor) else np.asarray(o, dtype=np.float32)
        for o in outputs
    ]


def relative_error(outputs, reference) -> float:
    """Largest absolute difference over the largest reference magnitude,
    the worst over all outputs; infinite when the outputs do not match the
    reference in number or shape."""
    import numpy as np
    got, expected = as_arrays(outputs), as_arrays(reference)
    if len(got) != len(expected) or any(
            a.shape != b.shape for a, b in zip(got, expected)):
        return float('inf')
    return max(
        float(np.abs(a - b).max()) / max(float(np.abs(b).max()), 1e-12)
        for a, b in zip(got, expected))
