# Copyright (c) mmnextvit contributors. All rights reserved.
"""ONNX files run in ONNX Runtime or OpenVINO on the CPU, and where their
time goes.

:func:`runner` makes a callable of one forward, with the thread count and
precision of a benchmark. :func:`time_by_part` runs a whole detector's or
segmentor's exported graph with the engine's own profiler (ONNX Runtime's
``enable_profiling``, OpenVINO's ``PERF_COUNT``) and adds the time of each
executed node to the part of the model it belongs to: the ``backbone``,
the ``neck + head`` (the neck and every layer of the heads) or the
``post-processing`` (what the export writes outside any layer: box
decoding, proposal and detection NMS, top-k, the resize of the logits to
the input and the argmax). A node belongs to the part named by its
module scope, the path the exporter writes into node names
(``/backbone/stages.0/...``); a node the engine inserts or fuses under a
new name (a layout reorder, a reshape around a matrix product) belongs to
the part of the node that produces its first input.
"""
import collections
import os.path as osp
import statistics
import tempfile
import warnings
from typing import Callable, Dict, Optional

__all__ = [
    'ONNX_OPSET', 'OPENVINO_PRECISION', 'PARTS', 'export_onnx', 'runner',
    'predictor',
    'KERNELS', 'int8_float_precision', 'int8_share',
    'head_scopes', 'part_of', 'time_by_part', 'parts_line'
]

ONNX_OPSET = 17
# The benchmark's --precision -> OpenVINO's INFERENCE_PRECISION_HINT. An
# int8 model (quantized by :mod:`.quantize`) runs what stays in float at
# bf16 where the CPU has bf16 instructions, else at fp32
# (:func:`int8_float_precision`).
OPENVINO_PRECISION = {'fp32': 'f32', 'fp16': 'f16', 'bf16': 'bf16'}
PARTS = ('backbone', 'neck + head', 'post-processing')
# Kinds of kernel in an int8 model (:func:`int8_share`): int8 arithmetic,
# (de)quantization, and what runs in float.
KERNELS = ('int8', 'quantize', 'float')
# Top-level layers of mmdet / mmseg models that are not the backbone.
_HEADS = ('neck', 'rpn_head', 'roi_head', 'bbox_head', 'mask_head',
          'decode_head', 'auxiliary_head')


def export_onnx(model, x, path: str, dynamic: bool = False) -> None:
    """``model`` at ``x``'s shape as an ONNX file (the TorchScript
    exporter, as mmdeploy exports); with ``dynamic``, the input's height
    and width are free."""
    import torch

    from mmnextvit.compat.torch import onnx_export
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter('ignore')
        onnx_export(
            model, (x, ),
            path,
            opset_version=ONNX_OPSET,
            input_names=['input'],
            dynamic_axes=({
                'input': {
                    2: 'height',
                    3: 'width'
                }
            } if dynamic else None),
            do_constant_folding=True)


def _ort_options(threads: int, **config):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    # Idle worker threads spin by default, taking the cores from the model
    # timed next; sleeping workers keep interleaved timings fair.
    options.add_session_config_entry('session.intra_op.allow_spinning', '0')
    # Errors only: saving the optimized graph (profiling) warns otherwise.
    options.log_severity_level = 3
    for key, value in config.items():
        setattr(options, key, value)
    return options


def int8_float_precision() -> str:
    """The precision OpenVINO runs the float part of an int8 model in on
    this CPU: ``'bf16'`` where its CPU plugin lists BF16, else
    ``'fp32'``."""
    import openvino as ov
    capabilities = ov.Core().get_property('CPU', 'OPTIMIZATION_CAPABILITIES')
    return 'bf16' if 'BF16' in capabilities else 'fp32'


def _openvino_model(path: str, precision: str, threads: int,
                    profile: bool = False):
    import openvino as ov
    if precision == 'int8':
        precision = int8_float_precision()
    config = {
        'INFERENCE_PRECISION_HINT': OPENVINO_PRECISION[precision],
        'INFERENCE_NUM_THREADS': threads,
        'PERFORMANCE_HINT': 'LATENCY'
    }
    if profile:
        config['PERF_COUNT'] = True
    return ov.Core().compile_model(path, 'CPU', config)


def predictor(engine: str, precision: str, path: str,
              threads: Optional[int] = None) -> Callable:
    """A callable running the ONNX file ``path`` on an array (its one
    input) in ``engine`` (``'onnxruntime'`` or ``'openvino'``) on the CPU
    with ``threads`` threads (default: torch's count), returning the
    outputs. ONNX Runtime's CPU provider runs the file as it is (fp32, or
    the int8 nodes of a quantized file); OpenVINO gets ``precision`` as its
    inference precision hint (for ``'int8'``, a file quantized by
    :mod:`.quantize`: :func:`int8_float_precision`)."""
    if threads is None:
        import torch
        threads = torch.get_num_threads()
    if engine == 'onnxruntime':
        import onnxruntime as ort
        session = ort.InferenceSession(
            path, _ort_options(threads), providers=['CPUExecutionProvider'])
        name = session.get_inputs()[0].name
        return lambda feed: session.run(None, {name: feed})
    request = _openvino_model(path, precision,
                              threads).create_infer_request()
    return lambda feed: request.infer({0: feed}).to_tuple()


def runner(engine: str, precision: str, path: str, feed,
           threads: Optional[int] = None) -> Callable:
    """A callable of no arguments running :func:`predictor` on ``feed``:
    one timed forward of the benchmark."""
    run = predictor(engine, precision, path, threads)
    return lambda: run(feed)


def head_scopes(model) -> Dict[str, str]:
    """The part (:data:`PARTS`) of each name a node's module scope may
    start with: ``backbone``, the top-level layers of the neck and heads,
    and their children (mmseg's heads export their layers without the
    head's own name: ``/scale_heads.0/...``, ``/conv_seg/...``)."""
    scopes = {'backbone': 'backbone'}
    for name, child in model.named_children():
        if name not in _HEADS:
            continue
        scopes[name] = 'neck + head'
        for sub, _ in child.named_children():
            scopes.setdefault(sub, 'neck + head')
            if sub in ('bbox_head', 'mask_head', 'bbox_roi_extractor',
                       'mask_roi_extractor'):
                for deeper, _ in getattr(child, sub).named_children():
                    scopes.setdefault(deeper, 'neck + head')
    return scopes


def part_of(name: str, scopes: Dict[str, str]) -> Optional[str]:
    """The part of the node ``name`` by its module scope, or None for a
    node without one. Fused nodes keep the scope of their first node
    (``fused /bbox_head/shared_fcs.0/Gemm``)."""
    name = name.split(' ')[-1]
    if not name.startswith('/'):
        return None
    parts = name.strip('/').split('/')
    if len(parts) < 2:
        return 'post-processing'
    # ONNX Runtime's NCHWc layout names a convolution by its output; a
    # layer of a ModuleList is named with its index (mmseg's heads export
    # ``/scale_heads.3/...``, ``/lateral_convs.0/...``).
    first = parts[0].split('_output_')[0]
    for scope in (first, first.rsplit('.', 1)[0]):
        if scope in scopes:
            return scopes[scope]
    return 'post-processing'


def _assign(times: Dict[str, float], producers: Dict[str, Optional[str]],
            scopes: Dict[str, str]) -> Dict[str, float]:
    """Add each node's time to its part; a node without a scope takes the
    part of its first input's producer (followed until one has a
    scope)."""
    totals = dict.fromkeys(PARTS, 0.)
    for node, ms in times.items():
        seen, current, part = set(), node, None
        while part is None and current is not None and current not in seen:
            seen.add(current)
            part = part_of(current, scopes)
            current = producers.get(current)
        totals[part or 'post-processing'] += ms
    return totals


def _profile_onnxruntime(path: str, feed, runs: int, threads: int):
    import json

    import onnx
    import onnxruntime as ort
    with tempfile.TemporaryDirectory(prefix='profile-') as folder:
        optimized = osp.join(folder, 'optimized.onnx')
        session = ort.InferenceSession(
            path,
            _ort_options(
                threads,
                enable_profiling=True,
                profile_file_prefix=osp.join(folder, 'profile'),
                optimized_model_filepath=optimized),
            providers=['CPUExecutionProvider'])
        name = session.get_inputs()[0].name
        for _ in range(runs + 1):
            session.run(None, {name: feed})
        with open(session.end_profiling()) as f:
            events = json.load(f)
        graph = onnx.load(optimized, load_external_data=False).graph
    made_by = {out: node.name for node in graph.node for out in node.output}
    producers = {
        node.name: made_by.get(node.input[0]) if node.input else None
        for node in graph.node
    }
    per_node = collections.defaultdict(list)
    kinds = {}
    for event in events:
        if event.get('cat') == 'Node' and event['name'].endswith(
                '_kernel_time'):
            node = event['name'][:-len('_kernel_time')]
            per_node[node].append(event['dur'] / 1e3)
            kinds[node] = _onnxruntime_kind(
                event.get('args', {}).get('op_name', ''))
    # The first run warms up; the median of the others.
    times = {
        node: statistics.median(values[1:] if len(values) > 1 else values)
        for node, values in per_node.items()
    }
    return times, producers, kinds


def _profile_openvino(path: str, feed, runs: int, threads: int,
                      precision: str):
    compiled = _openvino_model(path, precision, threads, profile=True)
    request = compiled.create_infer_request()
    request.infer({0: feed})
    per_node = collections.defaultdict(list)
    kinds = {}
    for _ in range(runs):
        request.infer({0: feed})
        for info in request.get_profiling_info():
            per_node[info.node_name].append(
                info.real_time.total_seconds() * 1e3)
            kinds[info.node_name] = _openvino_kind(info.node_type,
                                                   info.exec_type)
    producers = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        producers[op.get_friendly_name()] = (
            op.input_value(0).get_node().get_friendly_name()
            if op.get_input_size() else None)
    times = {node: statistics.median(v) for node, v in per_node.items()}
    return times, producers, kinds


def _onnxruntime_kind(op_type: str) -> str:
    """The :data:`KERNELS` kind of an ONNX Runtime kernel by operator
    type: its int8 kernels are the QLinear*, *Integer* and QGemm ones."""
    if op_type in ('QuantizeLinear', 'DequantizeLinear',
                   'DynamicQuantizeLinear'):
        return 'quantize'
    if op_type.startswith('QLinear') or 'Integer' in op_type or \
            op_type == 'QGemm':
        return 'int8'
    return 'float'


def _openvino_kind(node_type: str, exec_type: str) -> str:
    """The :data:`KERNELS` kind of an OpenVINO CPU node: the kernel's
    name ends with the precision it runs in (``brgconv_avx512_I8``)."""
    if node_type == 'FakeQuantize':
        return 'quantize'
    if exec_type.endswith(('_I8', '_U8')):
        return 'int8'
    return 'float'


def _profile(engine, precision, path, feed, runs, threads):
    if threads is None:
        import torch
        threads = torch.get_num_threads()
    if engine == 'onnxruntime':
        return _profile_onnxruntime(path, feed, runs, threads)
    return _profile_openvino(path, feed, runs, threads, precision)


def int8_share(engine: str,
               precision: str,
               path: str,
               feed,
               runs: int = 3,
               threads: Optional[int] = None) -> Dict[str, float]:
    """Milliseconds of one forward of ``path`` by the kind of kernel that
    ran each node (:data:`KERNELS`), from the engine's profiler: whether a
    quantized model really runs int8 kernels or falls back to float."""
    times, _, kinds = _profile(engine, precision, path, feed, runs, threads)
    totals = dict.fromkeys(KERNELS, 0.)
    for node, ms in times.items():
        totals[kinds.get(node, 'float')] += ms
    return totals


def time_by_part(engine: str,
                 precision: str,
                 path: str,
                 feed,
                 scopes: Optional[Dict[str, str]],
                 runs: int = 3,
                 threads: Optional[int] = None) -> Dict[str, float]:
    """Milliseconds of one forward of the ONNX file ``path`` on ``feed``
    spent in each part (:data:`PARTS`; ``scopes`` from
    :func:`head_scopes`), from the engine's profiler: each node's median
    over ``runs`` profiled runs after one warm-up. The parts add up to the
    time of the nodes, which leaves out the engine's own overhead between
    them (a few percent of a forward). With ``scopes=None`` (a backbone
    exported alone) every node is the backbone's."""
    times, producers, _ = _profile(engine, precision, path, feed, runs,
                                   threads)
    if scopes is None:
        return {'backbone': sum(times.values())}
    return _assign(times, producers, scopes)


def parts_line(parts: Dict[str, float]) -> str:
    """``backbone X ms (P%), ...``: each part and its share of their sum."""
    whole = sum(parts.values()) or 1.
    return ', '.join(f'{part} {ms:.0f} ms ({100 * ms / whole:.0f}%)'
                     for part, ms in parts.items())
