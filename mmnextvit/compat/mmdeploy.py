# Copyright (c) mmnextvit contributors. All rights reserved.
"""What mmdeploy 1.3.1 needs from torch 2.x and OpenVINO that they no
longer give.

mmdeploy 1.3.1 was written against torch 1.x / 2.0, whose ``torch.onnx``
exported through TorchScript, and against OpenVINO 2022, which still had
the Inference Engine API and Model Optimizer. Two of the things it relies
on are gone in torch 2.13, one changed in torch 2.1 and two are gone in
OpenVINO 2024 and later; each bridge
below restores exactly one behaviour, is applied only when what it stands
in for is missing (so a torch, OpenVINO or mmdeploy release that fixes it
makes the bridge a no-op), and is idempotent.
``tests/test_deploy.py`` has one test per bridge that fails when a release
makes the bridge wrong or unnecessary.

1. **TorchScript exporter for mmdeploy** (:func:`install`).
   ``torch.onnx.export`` defaults to ``dynamo=True`` since torch 2.9: the
   ``torch.export``-based exporter, which needs ``onnxscript`` and never
   calls the TorchScript symbolic functions and function rewriters mmdeploy
   registers (its RoIAlign, NMS and detector rewrites). mmdeploy's
   ``mmdeploy.apis.onnx.export`` calls ``torch.onnx.export`` without a
   ``dynamo`` argument. :func:`install` wraps ``torch.onnx.export`` so that
   a call *from an mmdeploy module* that does not choose gets
   ``dynamo=False``; every other caller, and a call that passes ``dynamo``,
   keeps torch's behaviour. Being installed on import of
   :mod:`mmnextvit.deploy.rewriters` (every deploy config's
   ``codebase_config.module``), it is in force wherever mmdeploy exports
   with these configs: in ``tools/deployment/deploy.py`` and in the child
   process in which mmdeploy's own ``tools/deploy.py`` runs ``torch2onnx``.
2. **``torch.onnx.symbolic_opset9._cast_Long``** (:func:`install`).
   mmdeploy's RoIAlign symbolic (ONNX Runtime backend, any opset) imports
   this private helper to cast the RoIs' batch column to int64; torch has
   removed it. :func:`install` puts back a function of that name that emits
   the same ONNX ``Cast(to=INT64)`` node.
3. **OpenVINO backend on the current OpenVINO API**
   (:func:`install`, :func:`openvino_bridge_needed`). mmdeploy's OpenVINO
   backend converts ONNX to OpenVINO IR by running Model Optimizer (the
   ``mo`` command, dropped from the ``openvino`` package in 2024.0; its
   successor ``ovc`` takes other arguments) and runs the IR through
   ``openvino.inference_engine.IECore`` (removed in 2024.0 as well).
   :func:`install` registers, under mmdeploy's ``'openvino'`` backend name,
   a backend manager whose ``to_backend`` converts with
   ``openvino.convert_model`` + ``openvino.save_model`` and whose wrapper
   runs the IR with ``openvino.Core`` (``read_model`` / ``compile_model``,
   reshaped and recompiled when an input's shape does not fit the IR's, as
   mmdeploy's wrapper does, and ``ValueError`` where that reshape fails: a
   Next-ViT graph exported with a static config holds its sizes as
   constants; in fp32 unless ``backend_config.precision``
   says ``'fp16'`` or ``'bf16'``, where OpenVINO's CPU plugin would pick
   bf16 on CPUs that have it). Applied only while ``openvino`` is installed
   without one of the two and mmdeploy's backend still calls it; openvino
   is imported only then, never when this module is imported.

4. **torch.fx's wrapped functions in a dict** (:func:`install`,
   :func:`fx_wraps_bridge_needed`). On entry mmdeploy's function-rewriter
   context imports the module of every function it rewrites
   (``torchvision.ops``, ``timm`` and the like, where installed), and on
   exit it pops as many entries from ``torch.fx``'s
   ``_wrapped_fns_to_patch`` as it holds beyond its count on entry, by
   index: a list in the torch it was written for, a dict keyed by
   (globals id, name) in torch 2.1 and later. A module imported inside the
   context that calls ``torch.fx.wrap`` (torchvision's and timm's do)
   grows the dict, and the exit raises ``KeyError: -1`` in place of the
   export's result. mmdeploy itself only ever appends to a list (its copy
   of a wrapped rewrite never matches a dict's keys), so what the dict
   gained are those modules' own wraps, which stay: :func:`install` makes
   the exit pop nothing from a dict. Applied only while torch keeps a dict
   and mmdeploy's exit still pops by index.

Known and left alone: mmdeploy registers function rewriters on
``torch.onnx.utils._model_to_graph`` and
``torch.onnx.symbolic_opset11._prepare_onnx_paddings``; in torch 2.13 those
names are re-exports of ``torch.onnx._internal.torchscript_exporter``, whose
own calls do not see the rewrite. That disables only what our deploy
configs do not use (``onnx_config.optimize=True``, opset >= 13 squeeze
rewriting, and padding with sizes computed in the graph). Of mmdeploy's
OpenVINO code, bridge 3 replaces what its backend registry hands out
(``BACKEND_MANAGERS`` and ``BACKEND_WRAPPER``); the names imported from
the modules directly (``mmdeploy.apis.openvino.from_onnx``,
``mmdeploy.backend.openvino.OpenVINOWrapper``) keep calling ``mo`` and
``IECore``, and a deploy config with ``backend_config.mo_options`` (Model
Optimizer flags, which ``convert_model`` does not take) is refused rather
than converted without them.
"""
import functools
import importlib
import importlib.util
import inspect
import logging
import os
import os.path as osp
import shutil
import sys
import tempfile
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch
import torch.onnx

from .torch import fix_onnx_symbolics

__all__ = [
    'install', 'install_when_imported', 'torchscript_for_mmdeploy',
    'cast_long_missing', 'export_defaults_to_dynamo', 'cast_to_int64',
    'openvino_bridge_needed', 'openvino_missing_apis',
    'mmdeploy_openvino_calls', 'openvino_backend_classes',
    'OPENVINO_PRECISION', 'fx_wraps_bridge_needed', 'keep_fx_wraps'
]

# onnx.TensorProto.INT64, spelled out so this module does not import onnx.
_ONNX_INT64 = 7
# Marks the wrapper of bridge 1, so installing twice wraps once.
_BRIDGE_MARK = '_mmnextvit_torchscript_default'
# Marks the backend manager and wrapper of bridge 3.
_OPENVINO_MARK = '_mmnextvit_openvino_core'
# Marks the rewriter context's exit of bridge 4.
_FX_MARK = '_mmnextvit_keeps_fx_wraps'


def install() -> None:
    """Apply the bridges that the installed torch, OpenVINO and mmdeploy
    need (each at most once), and the fixes of torch's ONNX symbolic
    functions that mmdeploy's exports need
    (:func:`mmnextvit.compat.torch.fix_onnx_symbolics`)."""
    fix_onnx_symbolics()
    if export_defaults_to_dynamo() and not getattr(torch.onnx.export,
                                                   _BRIDGE_MARK, False):
        torch.onnx.export = torchscript_for_mmdeploy(torch.onnx.export)
    if cast_long_missing():
        import torch.onnx.symbolic_opset9 as opset9
        opset9._cast_Long = cast_to_int64
    if fx_wraps_bridge_needed():
        from mmdeploy.core.rewriters.function_rewriter import \
            FunctionRewriter
        FunctionRewriter.exit = keep_fx_wraps(FunctionRewriter.exit)
    if openvino_bridge_needed():
        from mmdeploy.backend.base import BACKEND_MANAGERS, BACKEND_WRAPPER
        manager, wrapper = openvino_backend_classes()
        BACKEND_WRAPPER.register_module('openvino', module=wrapper,
                                        force=True)
        BACKEND_MANAGERS.register('openvino')(manager)


def install_when_imported() -> None:
    """Call :func:`install` once ``mmdeploy.apis`` has been imported, by
    whoever imports it: mmdeploy's own ``tools/deploy.py`` and
    ``tools/test.py`` import it first and this package afterwards (a model
    config's ``custom_imports``), and convert for OpenVINO in that process.
    Nothing is imported here."""
    from mmnextvit.compat import when_imported
    when_imported('mmdeploy.apis', lambda module: install())


# --------------------------------------------------------------------------
# 1. TorchScript exporter for mmdeploy
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


def torchscript_for_mmdeploy(export: Callable) -> Callable:
    """``export`` (``torch.onnx.export``) with ``dynamo=False`` for calls
    from an mmdeploy module that do not pass ``dynamo``; other calls go
    through unchanged."""

    @functools.wraps(export)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        caller = sys._getframe(1).f_globals.get('__name__', '')
        if caller.split('.')[0] == 'mmdeploy':
            kwargs.setdefault('dynamo', False)
        return export(*args, **kwargs)

    setattr(wrapper, _BRIDGE_MARK, True)
    return wrapper


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


# --------------------------------------------------------------------------
# 4. torch.fx's wrapped functions in a dict
# --------------------------------------------------------------------------
def _fx_wrapped_functions():
    from torch.fx import _symbolic_trace
    return getattr(_symbolic_trace, '_wrapped_fns_to_patch', None)


def fx_wraps_bridge_needed() -> bool:
    """Whether bridge 4 has to be (and is not yet) installed: torch.fx
    keeps its wrapped functions in a dict and mmdeploy's rewriter context
    pops them by index on exit."""
    if not isinstance(_fx_wrapped_functions(), dict) or not _importable(
            'mmdeploy'):
        return False
    from mmdeploy.core.rewriters.function_rewriter import FunctionRewriter
    if getattr(FunctionRewriter.exit, _FX_MARK, False):
        return False
    try:
        source = inspect.getsource(FunctionRewriter.exit)
    except (OSError, TypeError):
        return False
    return '_wrapped_fns_to_patch.pop(-1)' in source


def keep_fx_wraps(exit: Callable) -> Callable:
    """``exit`` (mmdeploy's ``FunctionRewriter.exit``) that pops nothing
    from a dict of wrapped functions: it counts them anew first."""

    @functools.wraps(exit)
    def wrapper(self, *args: Any, **kwargs: Any) -> Any:
        wrapped = _fx_wrapped_functions()
        if isinstance(wrapped, dict):
            self._ori_fx_wrap_num = len(wrapped)
        return exit(self, *args, **kwargs)

    setattr(wrapper, _FX_MARK, True)
    return wrapper


# --------------------------------------------------------------------------
# 3. OpenVINO backend on the current OpenVINO API
# --------------------------------------------------------------------------
def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:  # a parent package is missing or fails to import
        return False


def openvino_missing_apis() -> set:
    """What mmdeploy's OpenVINO backend calls and the installed openvino
    lacks: ``'IECore'`` (no ``openvino.inference_engine``), ``'mo'`` (no
    Model Optimizer command on the ``PATH``). Empty when openvino is not
    installed at all (then there is nothing to bridge to)."""
    if not _importable('openvino'):
        return set()
    missing = set()
    if not _importable('openvino.inference_engine'):
        missing.add('IECore')
    if shutil.which('mo') is None and shutil.which('mo.py') is None:
        missing.add('mo')
    return missing


def mmdeploy_openvino_calls() -> set:
    """Which of ``'IECore'`` and ``'mo'`` mmdeploy's own OpenVINO backend
    (``mmdeploy.backend.openvino``: its wrapper and converter) calls."""
    calls = set()
    try:
        from mmdeploy.backend.openvino import onnx2openvino, wrapper
        wrapper_source = inspect.getsource(wrapper)
        converter_source = inspect.getsource(onnx2openvino)
    except (ImportError, OSError, TypeError):
        return calls
    if 'IECore' in wrapper_source:
        calls.add('IECore')
    if 'get_mo_command' in converter_source:
        calls.add('mo')
    return calls


def openvino_bridge_needed() -> bool:
    """Whether bridge 3 has to be (and is not yet) installed: mmdeploy's
    OpenVINO backend calls an API the installed openvino lacks."""
    if not _importable('openvino') or not _importable('mmdeploy'):
        return False
    from mmdeploy.backend.base import get_backend_manager
    if getattr(get_backend_manager('openvino'), _OPENVINO_MARK, False):
        return False
    return bool(mmdeploy_openvino_calls() & openvino_missing_apis())


def _ir_file(onnx_file: str, work_dir: str) -> str:
    """``work_dir/<name of the ONNX file>.xml``: where mmdeploy's converter
    puts the IR (the weights go beside it, ``.bin``)."""
    return osp.join(work_dir, osp.splitext(osp.basename(onnx_file))[0] +
                    '.xml')


def _input_shapes(deploy_cfg: Any) -> Optional[Dict[str, List[int]]]:
    """The input shapes the IR is converted for: the deploy config's
    ``backend_config.model_inputs[0].opt_shapes`` (mmdeploy's OpenVINO
    convention, a dict by input name or a list in ``input_names`` order),
    or None to keep the ONNX file's (dynamic axes stay dynamic)."""
    model_inputs = deploy_cfg.get('backend_config', {}).get('model_inputs')
    if not model_inputs:
        return None
    shapes = model_inputs[0].get('opt_shapes')
    if not shapes:
        return None
    if not isinstance(shapes, dict):
        names = deploy_cfg.get('onnx_config', {}).get('input_names', [])
        shapes = dict(zip(names, shapes))
    return {name: [int(v) for v in shape] for name, shape in shapes.items()}


def _convert_to_ir(onnx_file: str, xml_file: str,
                   input_shapes: Optional[Dict[str, List[int]]]) -> None:
    """``onnx_file`` as OpenVINO IR (``xml_file`` and the ``.bin`` beside
    it), weights kept in fp32 as Model Optimizer kept them. Both files are
    written under temporary names and renamed into place once complete."""
    import openvino
    kwargs = {} if input_shapes is None else dict(input=input_shapes)
    model = openvino.convert_model(onnx_file, **kwargs)
    out_dir = osp.dirname(osp.abspath(xml_file))
    os.makedirs(out_dir, exist_ok=True)
    staging = tempfile.mkdtemp(prefix='.openvino.', dir=out_dir)
    try:
        staged = osp.join(staging, osp.basename(xml_file))
        openvino.save_model(model, staged, compress_to_fp16=False)
        bin_file = osp.splitext(xml_file)[0] + '.bin'
        os.replace(osp.splitext(staged)[0] + '.bin', bin_file)
        os.replace(staged, xml_file)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# backend_config.precision (mmdeploy's key, as for ONNX Runtime), or the
# benchmark's --precision, -> OpenVINO's INFERENCE_PRECISION_HINT.
OPENVINO_PRECISION = {'fp32': 'f32', 'fp16': 'f16', 'bf16': 'bf16'}


def _openvino_precision(deploy_cfg: Any) -> str:
    precision = 'fp32' if deploy_cfg is None else deploy_cfg.get(
        'backend_config', {}).get('precision', 'fp32')
    if precision not in OPENVINO_PRECISION:
        raise ValueError(
            f'backend_config.precision={precision!r}; OpenVINO runs '
            f'{sorted(OPENVINO_PRECISION)}')
    return OPENVINO_PRECISION[precision]


@functools.lru_cache(maxsize=None)
def openvino_backend_classes():
    """``(manager, wrapper)``: the backend manager and wrapper bridge 3
    registers for ``'openvino'`` (built on first use, so that importing
    this module imports neither mmdeploy nor openvino)."""
    from mmdeploy.backend.base import BaseWrapper
    from mmdeploy.backend.openvino.backend_manager import OpenVINOManager

    class OpenVINOCoreWrapper(BaseWrapper):
        """Runs an OpenVINO IR (``ir_model_file``, its ``.bin`` beside it)
        on the CPU with ``openvino.Core``; inputs and outputs as
        mmdeploy's OpenVINO wrapper takes and gives them (dicts of CPU
        tensors by name).

        An input whose shape the IR does not accept (a static IR and
        another shape) reshapes the model to it and compiles it again, as
        mmdeploy's wrapper does, or raises ValueError where the graph
        holds its sizes as constants (the Next-ViT models exported with a
        static config do); an IR with dynamic axes runs every shape as it
        is. ``precision`` is OpenVINO's inference precision (``'f32'``,
        ``'f16'``, ``'bf16'``).
        """

        def __init__(self,
                     ir_model_file: str,
                     output_names: Optional[Sequence[str]] = None,
                     precision: str = 'f32',
                     **kwargs: Any) -> None:
            import openvino
            self._precision = precision
            self._core = openvino.Core()
            self._model = self._core.read_model(ir_model_file)
            self._compile()
            if output_names is None:
                output_names = [
                    port.get_any_name() for port in self._model.outputs
                ]
            super().__init__(output_names)

        def _compile(self) -> None:
            self._request = self._core.compile_model(
                self._model, 'CPU',
                {'INFERENCE_PRECISION_HINT': self._precision
                 }).create_infer_request()

        def _fit(self, shapes: Dict[str, tuple]) -> None:
            """Reshape and recompile the model when an input's shape is
            outside what it accepts."""
            import openvino
            wanted = {}
            for port in self._model.inputs:
                name = port.get_any_name()
                shape = openvino.PartialShape(list(shapes[name]))
                if not port.get_partial_shape().compatible(shape):
                    wanted[name] = shape
            if not wanted:
                return
            try:
                self._model.reshape(wanted)
            except RuntimeError as err:
                accepted = {
                    port.get_any_name(): str(port.get_partial_shape())
                    for port in self._model.inputs
                }
                reason = str(err).strip().splitlines()[-1]
                raise ValueError(
                    f'the OpenVINO model takes inputs {accepted} and cannot '
                    f'be reshaped to {dict(shapes)} (a static export holds '
                    f'its sizes as constants; OpenVINO: {reason}); export '
                    f'with a dynamic deploy config or at this size') from None
            self._compile()

        def forward(self, inputs: Dict[str, torch.Tensor]
                    ) -> Dict[str, torch.Tensor]:
            arrays = {
                name: tensor.detach().cpu().contiguous().numpy()
                for name, tensor in inputs.items()
            }
            self._fit({name: a.shape for name, a in arrays.items()})
            results = self._request.infer(arrays)
            outputs = {}
            for port, value in results.items():
                # The request reuses its output buffers: copy them out.
                tensor = torch.from_numpy(value.copy())
                for name in port.get_names():
                    outputs[name] = tensor
            missing = [n for n in self.output_names if n not in outputs]
            if missing:
                raise RuntimeError(
                    f'the OpenVINO model has no output {missing}; its '
                    f'outputs are {sorted(outputs)}')
            return {name: outputs[name] for name in self.output_names}

    class OpenVINOCoreManager(OpenVINOManager):
        """mmdeploy's OpenVINO backend manager, converting with
        ``openvino.convert_model`` / ``save_model`` and running with
        :class:`OpenVINOCoreWrapper`."""

        @classmethod
        def build_wrapper(cls,
                          backend_files: Sequence[str],
                          device: str = 'cpu',
                          input_names: Optional[Sequence[str]] = None,
                          output_names: Optional[Sequence[str]] = None,
                          deploy_cfg: Optional[Any] = None,
                          **kwargs: Any) -> OpenVINOCoreWrapper:
            return OpenVINOCoreWrapper(
                ir_model_file=backend_files[0],
                output_names=output_names,
                precision=_openvino_precision(deploy_cfg))

        @classmethod
        def to_backend(cls,
                       ir_files: Sequence[str],
                       work_dir: str,
                       deploy_cfg: Any,
                       log_level: int = logging.INFO,
                       device: str = 'cpu',
                       **kwargs: Any) -> List[str]:
            """Each ONNX file of ``ir_files`` as IR in ``work_dir`` (same
            name, ``.xml`` and ``.bin``), for the input shapes of
            ``backend_config.model_inputs`` when the config gives them;
            returns the ``.xml`` files."""
            mo_options = deploy_cfg.get('backend_config',
                                        {}).get('mo_options')
            if mo_options:
                raise ValueError(
                    f'backend_config.mo_options={mo_options!r} are Model '
                    f'Optimizer flags, which openvino.convert_model does '
                    f'not take; remove them from the deploy config')
            xml_files = []
            for onnx_file in ir_files:
                xml_file = _ir_file(onnx_file, work_dir)
                _convert_to_ir(onnx_file, xml_file, _input_shapes(deploy_cfg))
                xml_files.append(xml_file)
            return xml_files

    for cls in (OpenVINOCoreWrapper, OpenVINOCoreManager):
        setattr(cls, _OPENVINO_MARK, True)
    return OpenVINOCoreManager, OpenVINOCoreWrapper
