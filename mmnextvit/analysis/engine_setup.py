# Copyright (c) mmnextvit contributors. All rights reserved.
"""A model made ready to time in an engine and a precision, for the latency
benchmark (:mod:`.latency_benchmark`): which combinations the engines run
(:func:`check_engine`), PyTorch eager or ``torch.compile`` in a cast
precision, or an exported ONNX file in ONNX Runtime or OpenVINO
(:func:`prepare_engine`, through :mod:`mmnextvit.deploy.engines`), and for
int8 the file quantized from it (:func:`int8_file`, through
:mod:`mmnextvit.deploy.quantize`), timed beside the same file in the
engine's float precisions (:func:`float_precisions`)."""
import copy
import os.path as osp
import time
from typing import Callable, List, Optional, Tuple

from mmnextvit.cli.errors import ToolError
from mmnextvit.deploy import engines, quantize
from .output_error import relative_error

__all__ = [
    'ENGINES', 'PRECISIONS', 'torch_dtype', 'check_engine',
    'float_precisions', 'prepare_engine', 'int8_file',
    'openvino_cpu_capabilities'
]

ENGINES = ('eager', 'compile', 'onnxruntime', 'openvino')
PRECISIONS = ('fp32', 'bf16', 'fp16', 'int8')


def torch_dtype(precision: str):
    import torch
    # int8 quantizes exported fp32 models: the ceiling kernels run in fp32.
    return dict(
        fp32=torch.float32, bf16=torch.bfloat16, fp16=torch.float16,
        int8=torch.float32)[precision]


def check_engine(engine: str, precision: str, device: str,
                 configs: List[str]) -> None:
    """Raises:
        ToolError: a combination the engines cannot run, or an engine (or
            its quantizer) that is not installed."""
    if configs and (engine == 'compile' or
                    (engine == 'eager' and precision != 'fp32')):
        raise ToolError(
            '--config times whole models in eager fp32, ONNX Runtime or '
            'OpenVINO only; drop --config or use --engine onnxruntime / '
            'openvino')
    if precision == 'int8' and engine not in ('onnxruntime', 'openvino'):
        raise ToolError(
            f'--precision int8 quantizes exported models: use --engine '
            f'onnxruntime or openvino, not {engine}')
    if engine == 'eager':
        return
    if engine in ('onnxruntime', 'openvino') and device != 'cpu':
        raise ToolError(
            f'--engine {engine} runs on the CPU here; use --device cpu')
    if engine == 'onnxruntime':
        if precision not in ('fp32', 'int8'):
            raise ToolError(
                f'--engine onnxruntime: its CPU provider runs these graphs '
                f'in fp32 (or quantized, int8) only; use --precision fp32 '
                f'or int8, or --engine openvino for {precision}')
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            raise ToolError(
                '--engine onnxruntime needs onnxruntime; pip install onnx '
                'onnxruntime (requirements/optional.txt)') from None
    if engine == 'openvino':
        try:
            import openvino  # noqa: F401
        except ImportError:
            raise ToolError(
                '--engine openvino needs OpenVINO; pip install openvino '
                '(requirements/optional.txt)') from None
    if precision == 'int8':
        quantize.require(engine)


def float_precisions(engine: str) -> List[str]:
    """What an int8 model is timed against in ``engine``: the same file in
    the engine's float precisions on this CPU."""
    if engine == 'onnxruntime':
        return ['fp32']
    return ['fp32'] + (['bf16'] if engines.int8_float_precision() == 'bf16'
                       else [])


def prepare_engine(
        engine: str, precision: str, model, x, reference, workdir: str,
        label: str,
        calib_images: int = 0) -> Tuple[Callable, float, float, Optional[str]]:
    """``(run, ready_s, rel_err, onnx_file)`` for ``model`` on input ``x``
    (fp32) in ``engine``: a callable of no arguments running one forward,
    the seconds it took to get it ready (compile with the first call, or
    export, quantize and load), its output's relative error against
    ``reference`` (the eager fp32 output) and the exported float file
    (None for eager and compile). ``model`` is the fp32 model in eval mode;
    int8 quantizes it on ``calib_images`` generated images.

    Raises:
        ToolError: the int8 quantization fails.
    """
    import torch
    dtype = torch_dtype(precision)
    start = time.perf_counter()
    if engine in ('eager', 'compile'):
        module = model if dtype == torch.float32 else \
            copy.deepcopy(model).to(dtype)
        inputs = x.to(dtype)
        if engine == 'compile':
            module = torch.compile(module, dynamic=False)
        with torch.no_grad():
            out = module(inputs)  # compiles for this shape

        def run():
            return module(inputs)
        path = None
    else:
        path = osp.join(workdir, f'{label}-{"x".join(map(str, x.shape))}'
                        '.onnx')
        engines.export_onnx(model, x, path)
        run = engines.runner(engine, precision,
                             int8_file(engine, precision, path, x.shape,
                                       calib_images), x.numpy())
        out = run()
    ready_s = time.perf_counter() - start
    return run, ready_s, relative_error(out, reference), path


def int8_file(engine: str, precision: str, path: str, shape,
              calib_images: int, scopes=None, options=None) -> str:
    """``path`` itself, or for int8 the file quantized from it for
    ``engine`` (:func:`mmnextvit.deploy.quantize.quantize_file`) on
    ``calib_images`` generated inputs of ``shape``; ``scopes`` keeps a
    whole model's post-processing in float, ``options`` are the int8 deploy
    config's settings.

    Raises:
        ToolError: the quantizer is missing or fails.
    """
    if precision != 'int8':
        return path
    batch, _, height, width = shape
    out = path[:-len('.onnx')] + ('-int8.xml' if engine == 'openvino' else
                                  '-int8.onnx')
    inputs = quantize.generated_inputs(height, width, calib_images, batch)
    return quantize.quantize_file(engine, path, out, inputs, scopes, options)


def openvino_cpu_capabilities() -> Optional[str]:
    """The precisions OpenVINO's CPU plugin can run on this CPU (a bf16
    hint falls back to f32 where BF16 is not among them)."""
    try:
        import openvino as ov
        return str(ov.Core().get_property('CPU',
                                          'OPTIMIZATION_CAPABILITIES'))
    except Exception:  # OpenVINO absent or too old for the property
        return None
