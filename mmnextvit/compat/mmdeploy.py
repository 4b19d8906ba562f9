# Copyright (c) mmnextvit contributors. All rights reserved.
"""What mmdeploy 1.3.1 needs from torch 2.x that torch no longer gives.

mmdeploy 1.3.1 was written against torch 1.x / 2.0, whose ``torch.onnx``
exported through TorchScript. Two of the things it relies on are gone in
torch 2.13; each bridge below restores exactly one of them, is applied only
when the thing is missing (so a torch or mmdeploy release that fixes it
makes the bridge a no-op), and is idempotent.
``tests/test_deploy.py`` has one test per bridge that fails when a release
makes the bridge wrong or unnecessary.

1. **TorchScript exporter by default** (:func:`torchscript_onnx_export`).
   ``torch.onnx.export`` defaults to ``dynamo=True`` since torch 2.9: the
   ``torch.export``-based exporter, which needs ``onnxscript`` and never
   calls the TorchScript symbolic functions and function rewriters mmdeploy
   registers (its RoIAlign, NMS and detector rewrites). mmdeploy's
   ``mmdeploy.apis.onnx.export`` calls ``torch.onnx.export`` without a
   ``dynamo`` argument. Inside the context manager a call that does not
   choose gets ``dynamo=False``; outside it nothing changes.
2. **``torch.onnx.symbolic_opset9._cast_Long``** (:func:`install`).
   mmdeploy's RoIAlign symbolic (ONNX Runtime backend, any opset) imports
   this private helper to cast the RoIs' batch column to int64; torch has
   removed it. :func:`install` puts back a function of that name that emits
   the same ONNX ``Cast(to=INT64)`` node.

Known and left alone: mmdeploy registers function rewriters on
``torch.onnx.utils._model_to_graph`` and
``torch.onnx.symbolic_opset11._prepare_onnx_paddings``; in torch 2.13 those
names are re-exports of ``torch.onnx._internal.torchscript_exporter``, whose
own calls do not see the rewrite. That disables only what our deploy
configs do not use (``onnx_config.optimize=True``, opset >= 13 squeeze
rewriting, and padding with sizes computed in the graph).
"""
import contextlib
import functools
import inspect
from typing import Any, Callable, Iterator

import torch
import torch.onnx

__all__ = [
    'install', 'torchscript_onnx_export', 'cast_long_missing',
    'export_defaults_to_dynamo', 'cast_to_int64'
]

# onnx.TensorProto.INT64, spelled out so this module does not import onnx.
_ONNX_INT64 = 7
# Marks the wrapper of bridge 1, so nesting does not wrap twice.
_BRIDGE_MARK = '_mmnextvit_torchscript_default'


def install() -> None:
    """Apply the process-wide bridge (2); bridge 1 is scoped, see
    :func:`torchscript_onnx_export`."""
    if cast_long_missing():
        import torch.onnx.symbolic_opset9 as opset9
        opset9._cast_Long = cast_to_int64


# --------------------------------------------------------------------------
# 1. TorchScript exporter by default
# --------------------------------------------------------------------------
def export_defaults_to_dynamo(export: Callable = None) -> bool:
    """Whether ``export`` (default: ``torch.onnx.export``) takes the dynamo
    exporter when its caller does not pass ``dynamo``."""
    export = torch.onnx.export if export is None else export
    try:
        parameter = inspect.signature(export).parameters.get('dynamo')
    except (TypeError, ValueError):
        return False
    return parameter is not None and parameter.default is True


@contextlib.contextmanager
def torchscript_onnx_export() -> Iterator[None]:
    """While inside, ``torch.onnx.export`` called without ``dynamo`` uses
    the TorchScript exporter (``dynamo=False``), the one mmdeploy's symbolic
    functions and rewriters hook into. A call that passes ``dynamo`` keeps
    its choice. No-op when torch already defaults to TorchScript or the
    bridge is active."""
    original = torch.onnx.export
    if getattr(original, _BRIDGE_MARK, False) or \
            not export_defaults_to_dynamo(original):
        yield
        return

    @functools.wraps(original)
    def export(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault('dynamo', False)
        return original(*args, **kwargs)

    setattr(export, _BRIDGE_MARK, True)
    torch.onnx.export = export
    try:
        yield
    finally:
        torch.onnx.export = original


# --------------------------------------------------------------------------
# 2. torch.onnx.symbolic_opset9._cast_Long
# --------------------------------------------------------------------------
def cast_long_missing() -> bool:
    """Whether ``torch.onnx.symbolic_opset9`` lacks ``_cast_Long`` (and this
    module has not put it back)."""
    import torch.onnx.symbolic_opset9 as opset9
    return not hasattr(opset9, '_cast_Long')


def cast_to_int64(g: Any, value: Any, non_blocking: Any = False) -> Any:
    """Symbolic helper: ``value`` cast to int64 in the ONNX graph ``g``.

    Stands in for torch's removed ``symbolic_opset9._cast_Long(g, input,
    non_blocking)``, with its arguments; ``non_blocking`` is a host-copy
    flag of ``Tensor.long()`` with no meaning inside a graph.
    """
    del non_blocking
    return g.op('Cast', value, to_i=_ONNX_INT64)
