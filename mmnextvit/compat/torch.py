# Copyright (c) mmnextvit contributors. All rights reserved.
"""What differs between the torch releases this package runs on, 2.1 to
2.14, and the one path each difference takes on each side.

``tests/test_compat_torch.py`` checks, on whichever torch it runs under,
that each side is taken where this module says and that the other side
would be wrong there.

1. **Autocast state by device** (:func:`autocast_dtype`). torch >= 2.4
   asks ``torch.is_autocast_enabled(device_type)`` and
   ``torch.get_autocast_dtype(device_type)``; torch < 2.4 has per-device
   functions instead (``is_autocast_cpu_enabled`` /
   ``get_autocast_cpu_dtype`` for the CPU, the argument-less
   ``is_autocast_enabled`` / ``get_autocast_gpu_dtype`` for CUDA) and no
   autocast on other devices as far as this package is concerned.
2. **Loading a checkpoint without running code from it**
   (:func:`load_weights_only`). torch >= 2.6 has a weights-only unpickler
   that takes an allowlist of extra globals in both forms this package
   needs (``add_safe_globals`` with objects and ``(object, name)`` pairs;
   the pairs arrived in 2.6), and its loads default to it. On torch < 2.6
   the file is read by :class:`RestrictedUnpickler` instead: Python's
   unpickler with ``find_class`` limited to torch's own weights-only
   allowlist plus the caller's, so a global outside both (``os.system``,
   ``io.open``, any class) is refused before anything is called, and the
   error names it the way torch's does (``Unsupported global: GLOBAL
   io.open``). Either way nothing from the file executes.
3. **Whether torch.compile is tracing** (:func:`is_compiling`).
   ``torch.compiler.is_compiling()`` from torch 2.3;
   ``torch._dynamo.is_compiling()`` before.
4. **ONNX export through TorchScript** (:func:`onnx_export`).
   ``torch.onnx.export`` takes a ``dynamo`` argument from torch 2.5 and
   defaults it to True from 2.9; the deployment code needs the TorchScript
   exporter (mmdeploy's symbolic functions and rewriters), so it passes
   ``dynamo=False`` where the argument exists and nothing where it does not
   (torch < 2.5 exports through TorchScript only).
5. **The GPU benchmark's training and CUDA graph calls**
   (:func:`grad_scaler`, :func:`cudagraph_mark_step_begin`).
   ``torch.amp.GradScaler(device_type)`` from torch 2.3
   (``torch.cuda.amp.GradScaler`` before, CUDA only);
   ``torch.compiler.cudagraph_mark_step_begin`` from 2.2
   (``torch._inductor.cudagraph_mark_step_begin`` in 2.1).
6. **Two ONNX symbolic functions of torch 2.1**
   (:func:`fix_onnx_symbolics`, applied by :func:`onnx_export` and before
   mmdeploy exports). Each is replaced only where a probe export shows the
   installed torch getting it wrong (torch 2.1.0 gets both wrong; 2.13
   neither):

   - ``Tensor.new_zeros`` / ``new_ones`` / ``new_full`` / ``new_empty``
     export in float whatever the tensor's dtype (their symbolic compares
     the ``dtype`` graph value with Python's None). mmdeploy's ``topk``
     rewrite builds ``k.new_zeros(())`` for a tensor ``k``, and the exported
     Mask R-CNN then held a ``Where`` of int64 and float that ONNX Runtime
     and OpenVINO refuse to load. The replacement gives the tensor's own
     dtype where none is asked for, as torch's own later symbolic does.
   - ``F.scaled_dot_product_attention`` with an explicit ``scale`` fails to
     export (``AttributeError: 'float' object has no attribute 'node'``),
     which every Next-ViT backbone export hits (E-MHSA passes
     ``scale=32 ** -0.5``). The replacement exports the same operators as
     torch's (query and key each multiplied by the root of the scale,
     MatMul, Softmax, MatMul) for calls without mask, dropout or causal
     masking, and leaves others to torch's.
"""
import _compat_pickle
import codecs
import collections
import importlib
import inspect
import pickle
import types
from typing import Any, Iterable, Optional, Tuple

import torch

__all__ = [
    'TORCH_VERSION', 'torch_at_least', 'autocast_dtype',
    'autocast_by_device_type', 'load_weights_only',
    'torch_weights_only_takes_allowlist', 'RestrictedUnpickler',
    'is_compiling', 'grad_scaler', 'cudagraph_mark_step_begin',
    'onnx_export', 'onnx_export_takes_dynamo',
    'fix_onnx_symbolics', 'broken_onnx_symbolics'
]


def _release(version: str) -> Tuple[int, ...]:
    """``'2.1.0+cu121'`` -> ``(2, 1, 0)``."""
    numbers = []
    for part in version.split('+')[0].split('.')[:3]:
        digits = ''.join(c for c in part if c.isdigit()) or '0'
        numbers.append(int(digits))
    return tuple(numbers)


TORCH_VERSION: Tuple[int, ...] = _release(torch.__version__)


def torch_at_least(*version: int) -> bool:
    """Whether the installed torch is ``version`` (e.g. ``2, 6``) or
    newer."""
    return TORCH_VERSION[:len(version)] >= tuple(version)


# --------------------------------------------------------------------------
# 1. Autocast state by device
# --------------------------------------------------------------------------
def autocast_by_device_type() -> bool:
    """Whether ``torch.is_autocast_enabled`` takes a device type (torch >=
    2.4)."""
    return torch_at_least(2, 4)


_BY_DEVICE_TYPE = autocast_by_device_type()


def autocast_dtype(device_type: str) -> Optional[torch.dtype]:
    """The dtype autocast gives convolutions on ``device_type`` (``'cpu'``,
    ``'cuda'``, ...), or None when autocast is off there."""
    if _BY_DEVICE_TYPE:
        # CPU and CUDA always have autocast; asking (a call torch.compile
        # cannot trace, so a graph break) only for other devices.
        if device_type not in ('cpu', 'cuda') and \
                not torch.amp.is_autocast_available(device_type):
            return None
        if not torch.is_autocast_enabled(device_type):
            return None
        return torch.get_autocast_dtype(device_type)
    if device_type == 'cpu':
        return (torch.get_autocast_cpu_dtype()
                if torch.is_autocast_cpu_enabled() else None)
    if device_type == 'cuda':
        return (torch.get_autocast_gpu_dtype()
                if torch.is_autocast_enabled() else None)
    return None


# --------------------------------------------------------------------------
# 2. Loading a checkpoint without running code from it
# --------------------------------------------------------------------------
def torch_weights_only_takes_allowlist() -> bool:
    """Whether torch's weights-only unpickler takes the allowlist this
    package gives it (``add_safe_globals`` with ``(object, name)`` pairs:
    torch >= 2.6)."""
    return torch_at_least(2, 6)


def _qualified_name(obj: Any) -> str:
    return f'{obj.__module__}.{obj.__qualname__}'


class RestrictedUnpickler(pickle.Unpickler):
    """Python's unpickler that resolves only allowlisted globals.

    Set :attr:`allowed` (``{'module.name': object}``) on a subclass. Every
    global a pickle names (classes and functions, the only way it can
    reach code) is looked up there; any other raises
    ``pickle.UnpicklingError('Weights only load failed: Unsupported
    global: GLOBAL module.name ...')`` before anything is called.
    """

    allowed: dict = {}

    def find_class(self, module: str, name: str) -> Any:
        # Python 2 names in protocol-2 pickles (``__builtin__.getattr``),
        # mapped as pickle's own find_class maps them.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        full_name = f'{module}.{name}'
        if full_name in self.allowed:
            return self.allowed[full_name]
        raise pickle.UnpicklingError(
            f'Weights only load failed: Unsupported global: GLOBAL '
            f'{full_name} is not an allowed global')


def _restricted_pickle_module(allowed: dict) -> types.ModuleType:
    """What ``torch.load(pickle_module=...)`` uses: a module with
    ``Unpickler`` and ``load``, both restricted to ``allowed``."""
    module = types.ModuleType('mmnextvit_restricted_pickle')
    module.Unpickler = type('Unpickler', (RestrictedUnpickler, ),
                            {'allowed': allowed})
    module.load = lambda file, **kwargs: module.Unpickler(file, **kwargs
                                                          ).load()
    return module


def _allowlist(extra: Iterable[Any]) -> dict:
    """torch's own weights-only globals plus ``extra`` (objects, or
    ``(object, 'module.name')`` pairs), by qualified name."""
    from torch import _weights_only_unpickler
    allowed = dict(_weights_only_unpickler._get_allowed_globals())
    # What torch 2.13 allows by default and 2.1 does not, so that a file
    # loads alike on both: bytes of a protocol-2 pickle (torch.save's
    # default; numpy arrays' data) rebuilt by ``_codecs.encode(text,
    # 'latin1')``, the plain containers mmengine's message hub and
    # optimizer states hold (``collections.Counter``, ``set``), and every
    # dtype and device by name.
    later = {
        '_codecs.encode': codecs.encode,
        'collections.Counter': collections.Counter,
        'builtins.set': set,
        'builtins.bytearray': bytearray,
        'builtins.complex': complex,
        'torch.device': torch.device,
    }
    later.update({
        f'torch.{name}': getattr(torch, name)
        for name in dir(torch) if isinstance(getattr(torch, name), torch.dtype)
    })
    for name, obj in later.items():
        allowed.setdefault(name, obj)
    for item in extra:
        if isinstance(item, tuple):
            obj, name = item
        else:
            obj, name = item, _qualified_name(item)
        allowed[name] = obj
    return allowed


def load_weights_only(path: str,
                      map_location: Any = None,
                      extra_globals: Iterable[Any] = ()) -> Any:
    """``torch.load(path)`` reading only tensors, plain containers and
    ``extra_globals`` (objects, or ``(object, 'module.name')`` pairs).

    A file that names any other global raises ``pickle.UnpicklingError``
    with ``'Weights only load failed'`` and ``'GLOBAL module.name'`` in its
    message, on every torch (see the module docstring, item 2).
    """
    extra_globals = list(extra_globals)
    if torch_weights_only_takes_allowlist():
        # Added for good: a context manager would remove them again on
        # exit, also when they were allowed process-wide before.
        torch.serialization.add_safe_globals(extra_globals)
        return torch.load(path, map_location=map_location, weights_only=True)
    return torch.load(
        path,
        map_location=map_location,
        weights_only=False,
        pickle_module=_restricted_pickle_module(_allowlist(extra_globals)))


# --------------------------------------------------------------------------
# 3. Whether torch.compile is tracing
# --------------------------------------------------------------------------
if hasattr(torch.compiler, 'is_compiling'):
    _is_compiling = torch.compiler.is_compiling
else:  # torch < 2.3
    import torch._dynamo

    _is_compiling = torch._dynamo.is_compiling


def is_compiling() -> bool:
    """Whether torch.compile is tracing the caller."""
    return _is_compiling()


# --------------------------------------------------------------------------
# 4. ONNX export through TorchScript
# --------------------------------------------------------------------------
def onnx_export_takes_dynamo(export: Any = None) -> bool:
    """Whether ``export`` (default: ``torch.onnx.export``) has a ``dynamo``
    argument (torch >= 2.5)."""
    export = torch.onnx.export if export is None else export
    try:
        return 'dynamo' in inspect.signature(export).parameters
    except (TypeError, ValueError):
        return False


def onnx_export(*args: Any, **kwargs: Any) -> Any:
    """``torch.onnx.export(*args, **kwargs)`` through the TorchScript
    exporter on every torch, with :func:`fix_onnx_symbolics` applied."""
    fix_onnx_symbolics()
    if onnx_export_takes_dynamo():
        kwargs.setdefault('dynamo', False)
    return torch.onnx.export(*args, **kwargs)


# --------------------------------------------------------------------------
# 5. The GPU benchmark's training and CUDA graph calls
# --------------------------------------------------------------------------
def grad_scaler(device_type: str, enabled: bool):
    """A gradient scaler for autocast training on ``device_type``."""
    if hasattr(torch.amp, 'GradScaler'):
        return torch.amp.GradScaler(device_type, enabled=enabled)
    # torch < 2.3: CUDA's scaler only (it disables itself without CUDA).
    return torch.cuda.amp.GradScaler(
        enabled=enabled and device_type == 'cuda')


def cudagraph_mark_step_begin() -> None:
    """Start a new step of CUDA graph replays (outputs of the previous
    replay may then be overwritten)."""
    if hasattr(torch.compiler, 'cudagraph_mark_step_begin'):
        torch.compiler.cudagraph_mark_step_begin()
    else:  # torch 2.1
        importlib.import_module('torch._inductor').cudagraph_mark_step_begin()


# --------------------------------------------------------------------------
# 6. Two ONNX symbolic functions of torch 2.1
# --------------------------------------------------------------------------
# The ``Tensor.new_*`` factories and where their ``dtype`` argument is,
# after the graph context and the tensor.
_NEW_FACTORIES = {'new_zeros': 1, 'new_ones': 1, 'new_empty': 1,
                  'new_full': 2}
# The opset the replacements are registered from (the symbolics they
# replace are opset-9 / opset-14 functions, used by every later opset).
_FACTORY_OPSET, _ATTENTION_OPSET = 9, 14


def _probe_export(module: torch.nn.Module, inputs: tuple, opset: int):
    """``module`` exported to an in-memory ONNX model (loaded with onnx),
    or the exception the export raised."""
    import io
    import warnings

    import onnx
    buffer = io.BytesIO()
    kwargs = {'dynamo': False} if onnx_export_takes_dynamo() else {}
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter('ignore')
            torch.onnx.export(module, inputs, buffer, opset_version=opset,
                              **kwargs)
    except Exception as err:  # the symbolic under test raises anything
        return err
    return onnx.load_from_string(buffer.getvalue())


class _NewZerosOfInt(torch.nn.Module):

    def forward(self, k):
        return k.new_zeros(2)


class _AttentionWithScale(torch.nn.Module):

    def forward(self, q):
        return torch.nn.functional.scaled_dot_product_attention(
            q, q, q, scale=0.5)


def broken_onnx_symbolics() -> set:
    """Which of ``'new_factories'`` and ``'attention_scale'`` (item 6) the
    installed torch's exporter gets wrong, by a probe export of each."""
    broken = set()
    model = _probe_export(_NewZerosOfInt(), (torch.tensor([3]), ),
                          _FACTORY_OPSET)
    if isinstance(model, Exception):
        broken.add('new_factories')
    else:
        import onnx
        output_type = model.graph.output[0].type.tensor_type.elem_type
        if output_type != onnx.TensorProto.INT64:
            broken.add('new_factories')
    model = _probe_export(_AttentionWithScale(), (torch.zeros(1, 2, 3), ),
                          _ATTENTION_OPSET)
    if isinstance(model, Exception):
        broken.add('attention_scale')
    return broken


def _factory_keeping_dtype(name: str, original: Any, dtype_index: int):
    from torch.onnx import symbolic_helper

    def symbolic(g, self, *args):
        args = list(args)
        if symbolic_helper._is_none(args[dtype_index]):
            scalar_type = symbolic_helper._try_get_scalar_type(self)
            if scalar_type is not None:
                args[dtype_index] = scalar_type
        return original(g, self, *args)

    symbolic.__name__ = name
    return symbolic


def _attention_with_scale(original: Any):
    from torch.onnx import symbolic_helper

    def symbolic(g, query, key, value, attn_mask=None, dropout_p=0.0,
                 is_causal=False, scale=None):
        plain = (symbolic_helper._is_none(attn_mask)
                 and symbolic_helper._maybe_get_const(dropout_p, 'f') == 0
                 and not symbolic_helper._maybe_get_const(is_causal, 'b'))
        factor = (None if scale is None or symbolic_helper._is_none(scale)
                  else symbolic_helper._maybe_get_const(scale, 'f'))
        if not plain or not isinstance(factor, float):
            return original(g, query, key, value, attn_mask, dropout_p,
                            is_causal, scale)
        rank = symbolic_helper._get_tensor_rank(key)
        perm = list(range(rank))
        perm[-1], perm[-2] = perm[-2], perm[-1]
        root = g.op('Constant',
                    value_t=torch.tensor(factor**0.5, dtype=torch.float))
        logits = g.op('MatMul', g.op('Mul', query, root),
                      g.op('Mul', g.op('Transpose', key, perm_i=perm), root))
        return g.op('MatMul', g.op('Softmax', logits, axis_i=-1), value)

    return symbolic


_FIXED: set = set()


def fix_onnx_symbolics() -> set:
    """Register the replacements of item 6 that the installed torch needs
    (once per process); returns what has been replaced."""
    if _FIXED or getattr(fix_onnx_symbolics, 'probed', False):
        return _FIXED
    fix_onnx_symbolics.probed = True
    broken = broken_onnx_symbolics()
    if 'new_factories' in broken:
        from torch.onnx import symbolic_opset9
        for name, index in _NEW_FACTORIES.items():
            torch.onnx.register_custom_op_symbolic(
                f'aten::{name}',
                _factory_keeping_dtype(name, getattr(symbolic_opset9, name),
                                       index), _FACTORY_OPSET)
        _FIXED.add('new_factories')
    if 'attention_scale' in broken:
        from torch.onnx import symbolic_opset14
        torch.onnx.register_custom_op_symbolic(
            'aten::scaled_dot_product_attention',
            _attention_with_scale(
                symbolic_opset14.scaled_dot_product_attention),
            _ATTENTION_OPSET)
        _FIXED.add('attention_scale')
    return _FIXED
