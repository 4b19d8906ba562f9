#!/usr/bin/env python
# Copyright (c) mmnextvit contributors. All rights reserved.
"""Inference latency of Next-ViT against CNN and ViT backbones on this
machine, and of whole detection / segmentation models.

    python tools/analysis_tools/benchmark.py                      # full table
    python tools/analysis_tools/benchmark.py --models nextvit-s-deploy \\
        resnet101 --sizes 224x224 --reps 5 --warmup 1              # quick
    python tools/analysis_tools/benchmark.py --models none --sizes 800x1216 \\
        --config configs/mask_rcnn/nextvit_s_1x.py \\
        mmdet::mask_rcnn/mask-rcnn_r101_fpn_1x_coco.py
    python tools/analysis_tools/benchmark.py --json out.json --png out.png
    python tools/analysis_tools/benchmark.py --models nextvit-s-deploy \
        resnet101 --engine openvino --precision bf16      # other engines

Engines and precisions (``--engine``, ``--precision``) apply to every
backbone alike. ``eager`` runs the PyTorch modules, ``compile`` runs them
through ``torch.compile`` (inductor, with ``freezing``: weights folded as
constants, as for deployment), ``onnxruntime`` and ``openvino`` run an ONNX
file of each model exported at each size (``torch.onnx.export`` with the
TorchScript exporter, ``dynamo=False``, opset 17; Next-ViT after
``switch_to_deploy()`` where the name says ``-deploy``). ``--precision bf16``
or ``fp16`` casts weights and input for ``eager`` and ``compile``, and sets
OpenVINO's ``INFERENCE_PRECISION_HINT`` on the fp32 file (ONNX Runtime's CPU
provider runs these graphs in fp32 only). The time a model takes to get
ready at a size (compilation with the first call, export and session
creation) is reported apart (``ready s``), never inside the latencies, and
each engine's output is compared with the eager fp32 output of the same
model (``rel err``: largest absolute difference over the largest magnitude).
``--precision int8`` quantizes each exported file for ``--engine``
(:mod:`mmnextvit.deploy.quantize`, as the int8 deploy configs do; whole
models with their task's int8 deploy config settings), calibrated on
``--calib-images`` generated shapes images at the size, the same for every
model, and times it beside the same float file in the engine's float
precisions (OpenVINO fp32 and, where the CPU has it, bf16; ONNX Runtime
fp32) in the same rounds; ``x R-101`` compares like with like, and a
summary gives each model's int8 speed-up over its float file.
OpenVINO is optional: ``pip install openvino`` (requirements/optional.txt).

Method. Every model and size is warmed up, then the models of one size are
timed in turns (one forward each, ``--reps`` rounds), so a change of machine
load hits all of them alike; the table gives the median and the spread
(interquartile range). Inputs are plain NCHW fp32 tensors, batch 1, under
``torch.no_grad()`` in eval mode. Three dense kernels are timed in the same
rounds: a square matrix product (MKL or cuBLAS), and a 1x1 and a 3x3
convolution in channels-last layout (oneDNN or cuDNN). The fastest rate among
them is the practical ceiling of the machine, and each model's achieved FLOP
rate is given as a share of it. (The matrix product alone is not a ceiling
everywhere: on the AMD CPU of docs/benchmarks.md MKL's fp32 product runs
at about 200 GFLOP/s while oneDNN's convolutions reach 400-500.) FLOPs are
MMEngine's counter (``FlopAnalyzer``, with the rule for fused attention from
``get_flops.py``) times two: one multiply-add = 2 FLOPs, like the ceiling.

Peak memory is measured after all timings: the growth of the process's
resident set (``VmHWM`` after resetting it through ``/proc/self/clear_refs``)
during one forward, with glibc told to return every large block to the
system at once (so freed activations do not hide in the heap). It counts
activations and scratch buffers, not the weights. Linux only; '-' elsewhere.

Allocator. With glibc's defaults every block over 32 MiB is a fresh mmap,
page-faulted and zeroed again at each forward unless an earlier free left a
large enough hole in the heap; at detection sizes that makes a network's
time depend on what ran before it in the process (ResNet-101 at 800x1216:
900 to 1350 ms on the machine of docs/benchmarks.md). ``--keep-memory``
makes glibc keep freed memory for reuse, as tcmalloc and jemalloc do, for
all models alike: times that depend on the arithmetic, not the allocator's
history. It skips the memory pass (the heap it keeps would hide part of
the peaks).

Whole models (``--config``) run ``model.predict`` on a preprocessed input with
the stock test settings, except that the work of the heads is fixed (unless
``--free-work``): the proposal NMS keeps all 1000 proposals and the RoI head
keeps its 100 best detections whatever their score, so models with random
weights do the work of a trained one, equally for every backbone. A
backbone's ``init_cfg`` is dropped (nothing is downloaded). Configs whose
backbone has ``switch_to_deploy`` are also timed after it (``+deploy``).
With ``--engine onnxruntime`` or ``openvino`` each whole model is also
exported at each size the way ``tools/deployment/deploy.py`` exports it
(mmdeploy, the static deploy config of its task in ``configs/deploy/`` at
that size; for Mask R-CNN the graph keeps its 100 best detections whatever
their score, like the PyTorch rows; the graph holds standard ONNX operators
only, ``RoiAlign`` and ``NonMaxSuppression`` among them, so both engines
run it) and timed in the engine from the preprocessed input to the graph's
outputs (mmdeploy pastes the masks outside the graph); OpenVINO at
``--precision``. ``--engine-only`` leaves out the PyTorch rows. After the
timed rounds each exported model is profiled with the engine's own
profiler (:func:`mmnextvit.deploy.engines.time_by_part`): the time of its
backbone, its neck + head and its post-processing, and that of its
backbone exported alone at the same size, so that a model's time can be
traced to its parts. Each whole model's backbone is printed and recorded
(``ResNetV1c-50``...). Whole-model ratios are against the model of
``--reference-config`` (default: the last ``--config``) in the same engine.
"""
import argparse
import copy
import datetime
import json
import os
import os.path as osp
import statistics
import tempfile
import time
from typing import Callable, Dict, List, Optional, Tuple

from mmnextvit.analysis.machine import cpu_model
from mmnextvit.analysis.memory import (keep_freed_memory, reset_peak_rss,
                                       return_freed_memory_at_once, status_kib)
from mmnextvit.analysis.output_error import relative_error
from mmnextvit.cli import ToolError, fail, parse_image_size
from mmnextvit.config_resolver import config_root, resolve_any
from mmnextvit.deploy import engines, quantize

BACKBONES: Dict[str, dict] = {
    'nextvit-s': dict(scope='mmnextvit', type='NextViT', arch='small'),
    'nextvit-b': dict(scope='mmnextvit', type='NextViT', arch='base'),
    'nextvit-l': dict(scope='mmnextvit', type='NextViT', arch='large'),
    'resnet50': dict(scope='mmdet', type='ResNet', depth=50),
    'resnet101': dict(scope='mmdet', type='ResNet', depth=101),
    # mmdet's Swin-T as in mask-rcnn_swin-t-p4-w7_fpn_1x_coco.
    'swin-t': dict(
        scope='mmdet',
        type='SwinTransformer',
        embed_dims=96,
        depths=[2, 2, 6, 2],
        num_heads=[3, 6, 12, 24],
        window_size=7,
        mlp_ratio=4,
        qkv_bias=True,
        drop_path_rate=0.2,
        patch_norm=True,
        out_indices=(0, 1, 2, 3)),
}
DEPLOYABLE = ('nextvit-s', 'nextvit-b', 'nextvit-l')
MODEL_NAMES = [
    name for base in BACKBONES
    for name in ((base, base + '-deploy') if base in DEPLOYABLE else (base, ))
]
DEFAULT_SIZES = ['224x224', '512x512', '800x1216']
REFERENCE = 'resnet101'
ENGINES = ('eager', 'compile', 'onnxruntime', 'openvino')
PRECISIONS = ('fp32', 'bf16', 'fp16', 'int8')
# Whole models are exported with the static deploy config of their task
# (configs/deploy/), resized to each --sizes entry.
DEPLOY_SIZES = {'instance-seg': '800x1344', 'segmentation': '512x512'}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Latency of Next-ViT against ResNet and Swin backbones '
        'and of whole models, on the CPU (or the GPU with --device cuda).')
    parser.add_argument(
        '--models',
        nargs='+',
        default=MODEL_NAMES,
        metavar='NAME',
        help=f'backbones to time, among {MODEL_NAMES}, or "none" (default: '
        'all)')
    parser.add_argument(
        '--sizes',
        nargs='+',
        default=DEFAULT_SIZES,
        metavar='HxW',
        help=f'input sizes (default: {" ".join(DEFAULT_SIZES)})')
    parser.add_argument(
        '--extra-sizes',
        nargs='+',
        default=[],
        metavar='HxW',
        help='sizes added to --sizes')
    parser.add_argument(
        '--config',
        nargs='+',
        default=[],
        metavar='CONFIG',
        help='whole detection / segmentation models to time (files or '
        'mmdet:: / mmseg:: / mmnextvit:: paths)')
    parser.add_argument(
        '--reference-config',
        metavar='CONFIG',
        help='the --config whole-model ratios are taken against (default: '
        'the last one)')
    parser.add_argument(
        '--reps', type=int, default=10, help='timed rounds (default: 10)')
    parser.add_argument(
        '--warmup',
        type=int,
        default=2,
        help='untimed forwards per model and size first (default: 2)')
    parser.add_argument(
        '--threads',
        type=int,
        default=None,
        help='torch threads (default: leave torch\'s choice)')
    parser.add_argument(
        '--batch', type=int, default=1, help='batch size (default: 1)')
    parser.add_argument(
        '--device', default='cpu', help='cpu or cuda (default: cpu)')
    parser.add_argument(
        '--engine',
        choices=ENGINES,
        default='eager',
        help='what runs the backbones, all alike (default: eager)')
    parser.add_argument(
        '--precision',
        choices=PRECISIONS,
        default=None,
        help='fp32 (default), bf16 or fp16: weights and input cast '
        '(eager, compile) or OpenVINO\'s inference precision; int8: each '
        'exported model quantized (ONNX Runtime, OpenVINO), timed beside '
        'the same file in the engine\'s float precisions')
    parser.add_argument(
        '--calib-images',
        type=int,
        default=20,
        help='--precision int8: calibration images per model and size, the '
        'same for every model (default: 20)')
    parser.add_argument(
        '--fp16',
        action='store_true',
        help='same as --precision fp16 (kept for older command lines)')
    parser.add_argument(
        '--matmul-size',
        type=int,
        default=4096,
        help='side of the square matrices (and channels of the 1x1 '
        'convolution) of the ceiling (default: 4096)')
    parser.add_argument(
        '--no-flops', action='store_true', help='skip the FLOP counts')
    parser.add_argument(
        '--no-memory', action='store_true', help='skip the memory pass')
    parser.add_argument(
        '--keep-memory',
        action='store_true',
        help='make glibc keep freed memory for reuse, as tcmalloc and '
        'jemalloc do (no fresh mmap per large block); skips the memory '
        'pass, whose peaks the kept memory would hide')
    parser.add_argument(
        '--free-work',
        action='store_true',
        help='keep the stock NMS and score threshold of whole models')
    parser.add_argument(
        '--engine-only',
        action='store_true',
        help='with --engine onnxruntime / openvino, time whole models in '
        'the engine only (no PyTorch rows)')
    parser.add_argument('--json', help='write the results to this file')
    parser.add_argument('--png', help='draw a bar chart into this file')
    return parser.parse_args()


# ---------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------
class Candidate:
    """One thing to time: a name, a callable of the input, FLOPs, and for
    engines other than eager the seconds it took to get ready at this size
    and the relative error of its output against eager fp32."""

    def __init__(self,
                 name: str,
                 run: Callable,
                 flops: Optional[float],
                 group: str,
                 ready_s: Optional[float] = None,
                 rel_err: Optional[float] = None,
                 engine: str = 'eager',
                 config: Optional[str] = None,
                 precision: Optional[str] = None):
        self.name, self.run, self.flops, self.group = name, run, flops, group
        self.ready_s, self.rel_err = ready_s, rel_err
        self.engine, self.config = engine, config
        # None: the run's --precision (PyTorch rows of whole models: fp32).
        self.precision = precision
        self.times: List[float] = []
        self.memory: Optional[float] = None
        # An exported whole model: what time_parts needs, then its result.
        self.parts = None


def build_backbone(name: str):
    import mmdet.models  # noqa: F401  (fills mmdet's registry)
    from mmdet.registry import MODELS as MMDET_MODELS

    import mmnextvit  # noqa: F401
    from mmnextvit.registry import MODELS as OWN_MODELS
    base = name[:-len('-deploy')] if name.endswith('-deploy') else name
    cfg = dict(BACKBONES[base])
    registry = OWN_MODELS if cfg.pop('scope') == 'mmnextvit' else \
        MMDET_MODELS
    model = registry.build(dict(cfg, init_cfg=None))
    model.eval()
    if name.endswith('-deploy'):
        model.switch_to_deploy()
    return model


# ---------------------------------------------------------------------------
# Engines
# ---------------------------------------------------------------------------
def torch_dtype(precision: str):
    import torch
    # int8 quantizes exported fp32 models: the ceiling kernels run in fp32.
    return dict(
        fp32=torch.float32, bf16=torch.bfloat16, fp16=torch.float16,
        int8=torch.float32)[precision]


def check_engine(engine: str, precision: str, device: str,
                 configs: List[str]) -> None:
    """One clear line for a combination the engines cannot run."""
    if configs and (engine == 'compile' or
                    (engine == 'eager' and precision != 'fp32')):
        fail('--config times whole models in eager fp32, ONNX Runtime or '
             'OpenVINO only; drop --config or use --engine onnxruntime / '
             'openvino')
    if precision == 'int8' and engine not in ('onnxruntime', 'openvino'):
        fail(f'--precision int8 quantizes exported models: use --engine '
             f'onnxruntime or openvino, not {engine}')
    if engine == 'eager':
        return
    if engine in ('onnxruntime', 'openvino') and device != 'cpu':
        fail(f'--engine {engine} runs on the CPU here; use --device cpu')
    if engine == 'onnxruntime':
        if precision not in ('fp32', 'int8'):
            fail(f'--engine onnxruntime: its CPU provider runs these graphs '
                 f'in fp32 (or quantized, int8) only; use --precision fp32 '
                 f'or int8, or --engine openvino for {precision}')
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            fail('--engine onnxruntime needs onnxruntime; pip install onnx '
                 'onnxruntime (requirements/optional.txt)')
    if engine == 'openvino':
        try:
            import openvino  # noqa: F401
        except ImportError:
            fail('--engine openvino needs OpenVINO; pip install openvino '
                 '(requirements/optional.txt)')
    if precision == 'int8':
        try:
            quantize.require(engine)
        except ToolError as err:
            fail(str(err))


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
    int8 quantizes it on ``calib_images`` generated images."""
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
    config's settings."""
    if precision != 'int8':
        return path
    batch, _, height, width = shape
    out = path[:-len('.onnx')] + ('-int8.xml' if engine == 'openvino' else
                                  '-int8.onnx')
    inputs = quantize.generated_inputs(height, width, calib_images, batch)
    try:
        return quantize.quantize_file(engine, path, out, inputs, scopes,
                                      options)
    except ToolError as err:
        fail(str(err))


def prepare_whole_model(engine: str, precision: str, cfg, model, scope: str,
                        height: int, width: int, inputs, workdir: str,
                        label: str, calib_images: int = 0
                        ) -> Tuple[Callable, float, str, str]:
    """``(run, ready_s, onnx_file, timed_file)`` for the whole model of
    ``cfg`` (weights of ``model``) exported with mmdeploy at ``height`` x
    ``width`` and run in ``engine`` at ``precision`` on ``inputs`` (the
    preprocessed input): the exported float file, and the file timed (for
    int8 the one quantized from it, post-processing kept in float)."""
    import cv2
    import numpy as np
    import torch

    from mmnextvit.deploy import pipeline
    start = time.perf_counter()
    task = 'instance-seg' if scope == 'mmdet' else 'segmentation'
    deploy_cfg = pipeline.load_deploy_config(
        osp.join(config_root(), 'deploy', f'{task}_onnxruntime_static-'
                 f'{DEPLOY_SIZES[task]}.py'))
    deploy_cfg.onnx_config.input_shape = [width, height]
    if task == 'instance-seg' and cfg.model.test_cfg.rcnn.score_thr == 0:
        # The fixed work of the PyTorch rows: 100 detections always.
        deploy_cfg.codebase_config.post_processing.score_threshold = 0.
    folder = osp.join(workdir, f'{label}-{height}x{width}')
    os.makedirs(folder, exist_ok=True)
    checkpoint = osp.join(folder, 'weights.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, checkpoint)
    image = osp.join(folder, 'image.png')
    cv2.imwrite(image, np.zeros((height, width, 3), np.uint8))
    # The ONNX Runtime deploy config's backend file is the ONNX file, which
    # OpenVINO reads as well.
    (onnx_file, ) = pipeline.export(cfg, deploy_cfg, checkpoint, image,
                                    osp.join(folder, 'export'))
    options = None
    if precision == 'int8':
        # The settings of the task's int8 deploy config for this engine.
        options = quantize.settings(
            pipeline.load_deploy_config(
                osp.join(config_root(), 'deploy', f'{task}_{engine}-int8_'
                         f'static-{DEPLOY_SIZES[task]}.py')))
    timed_file = int8_file(engine, precision, onnx_file, inputs.shape,
                           calib_images, engines.head_scopes(model), options)
    run = engines.runner(engine, precision, timed_file, inputs.cpu().numpy())
    run()
    return run, time.perf_counter() - start, onnx_file, timed_file


def time_parts(engine: str, precision: str, onnx_file: str, feed, model,
               backbone_file: str, calib_images: int = 0) -> dict:
    """Milliseconds of the exported whole model spent in its backbone,
    neck + head and post-processing (:func:`engines.time_by_part`), and of
    its backbone exported alone at the same size (deployed where it can
    be, as mmdeploy exports it inside the model), profiled alike."""
    import torch
    parts = engines.time_by_part(engine, precision, onnx_file, feed,
                                 engines.head_scopes(model))
    backbone = copy.deepcopy(model.backbone)
    backbone.eval()  # mmdet / mmseg ResNets' train() returns None
    if hasattr(backbone, 'switch_to_deploy'):
        backbone.switch_to_deploy()
    engines.export_onnx(backbone, torch.from_numpy(feed), backbone_file)
    backbone_file = int8_file(engine, precision, backbone_file, feed.shape,
                              calib_images)
    alone = engines.time_by_part(engine, precision, backbone_file, feed,
                                 None)['backbone']
    found = dict(parts_ms=parts, backbone_alone_ms=alone)
    if precision == 'int8':
        found['kernels_ms'] = engines.int8_share(engine, precision,
                                                 onnx_file, feed)
    return found


def parts_table(results: List[dict]) -> str:
    """One line per exported whole model: its parts, and its backbone
    inside against the backbone exported alone (profiled alike)."""
    lines = []
    for row in results:
        found = row.get('parts')
        if not found:
            continue
        inside = found['parts_ms']['backbone']
        alone = found['backbone_alone_ms']
        lines.append(f'{row["size"]:>9} {row["model"]:<30} '
                     f'{engines.parts_line(found["parts_ms"])}; backbone '
                     f'alone {alone:.0f} ms (inside / alone '
                     f'{inside / alone:.2f})')
    return '\n'.join(lines)


def int8_table(results: List[dict]) -> str:
    """One line per int8 row: how much faster it runs than the same file
    in each float precision (their medians, from the same rounds), and for
    whole models the share of node time in int8 kernels."""
    lines = []
    for row in results:
        if row.get('precision') != 'int8':
            continue
        base = row['model'].split(' [')[0]
        speedups = []
        for other in results:
            if (other['size'] == row['size'] and other is not row
                    and other['precision'] != 'int8'
                    and other['engine'] == row['engine']
                    and other['model'].split(' (')[0].split(' [')[0] == base
                    and '+deploy' not in other['model']):
                speedups.append(f'{other["median_ms"] / row["median_ms"]:.2f}x'
                                f' vs {other["precision"]}')
                row[f'speedup_vs_{other["precision"]}'] = (
                    other['median_ms'] / row['median_ms'])
        kernels = (row.get('parts') or {}).get('kernels_ms')
        share = ''
        if kernels:
            total = sum(kernels.values()) or 1.
            share = '; node time ' + ', '.join(
                f'{kind} {100 * ms / total:.0f}%'
                for kind, ms in kernels.items())
        lines.append(f'{row["size"]:>9} {row["model"]:<30} int8 '
                     f'{", ".join(speedups) or "-"}{share}')
    return '\n'.join(lines)


def openvino_cpu_capabilities() -> Optional[str]:
    """The precisions OpenVINO's CPU plugin can run on this CPU (a bf16
    hint falls back to f32 where BF16 is not among them)."""
    try:
        import openvino as ov
        return str(ov.Core().get_property('CPU',
                                          'OPTIMIZATION_CAPABILITIES'))
    except Exception:  # OpenVINO absent or too old for the property
        return None


def count_flops(module, inputs) -> Optional[float]:
    """FLOPs (2 per multiply-add) of ``module(*inputs)``; None when the
    counter cannot trace it."""
    from mmnextvit.analysis.flops import total_flops
    try:
        return total_flops(module, inputs)
    except Exception as error:  # tracing whole models may fail
        print(f'benchmark: FLOPs not counted for {type(module).__name__}: '
              f'{str(error).splitlines()[0][:100]}')
        return None


def build_config_model(path: str, free_work: bool):
    from mmengine.config import Config
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import MODELS, init_default_scope

    import mmnextvit  # noqa: F401  (mmnextvit:: paths)
    try:
        cfg = Config.fromfile(resolve_any(path))
    except Exception as error:
        fail(f"cannot read config '{path}': {str(error).splitlines()[0]}")
    scope = cfg.get('default_scope')
    if scope not in ('mmdet', 'mmseg'):
        fail(f"config '{path}' has default_scope={scope!r}; use an mmdet "
             'or mmseg config')
    init_default_scope(scope)
    cfg.model.backbone.init_cfg = None
    if 'pretrained' in cfg.model:
        cfg.model.pretrained = None
    test_cfg = cfg.model.get('test_cfg') or {}
    if not free_work and test_cfg.get('rpn') and test_cfg.get('rcnn'):
        test_cfg.rpn.nms.iou_threshold = 1.
        test_cfg.rcnn.score_thr = 0.
    model = revert_sync_batchnorm(MODELS.build(cfg.model))
    model.eval()
    return model, scope, cfg


def backbone_name(cfg) -> str:
    """What a config's backbone is, e.g. ``ResNetV1c-101``: printed and
    recorded beside each whole model, so that a config whose name and
    backbone disagree shows (mmseg 1.2.2's Semantic FPN "r101" config
    builds a ResNet-50, see configs/semfpn/fpn_r101_ade20k-512x512.py)."""
    backbone = cfg.model.backbone
    kind = str(backbone.type).split('.')[-1]
    size = backbone.get('depth') or backbone.get('arch')
    return f'{kind}-{size}' if size else kind


def config_label(path: str) -> str:
    """The name a whole model's rows go by: its config file's stem."""
    return osp.splitext(osp.basename(path.split('::')[-1]))[0]


def config_inputs(model, scope: str, batch: int, height: int, width: int,
                  device: str, dtype):
    import torch
    if scope == 'mmdet':
        from mmdet.structures import DetDataSample as Sample
    else:
        from mmseg.structures import SegDataSample as Sample
    meta = dict(
        img_shape=(height, width),
        ori_shape=(height, width),
        pad_shape=(height, width),
        batch_input_shape=(height, width),
        padding_size=[0, 0, 0, 0],
        scale_factor=(1., 1.))
    samples = [Sample(metainfo=meta) for _ in range(batch)]
    inputs = torch.randn(batch, 3, height, width, device=device, dtype=dtype)
    return inputs, samples


# ---------------------------------------------------------------------------
# Measurement
# ---------------------------------------------------------------------------
def sync(device: str) -> None:
    if device.startswith('cuda'):
        import torch
        torch.cuda.synchronize()


def timed(run: Callable, device: str) -> float:
    sync(device)
    start = time.perf_counter()
    run()
    sync(device)
    return (time.perf_counter() - start) * 1e3


def peak_memory_mib(run: Callable) -> Optional[float]:
    try:
        before = reset_peak_rss()
    except OSError:
        return None
    run()
    peak = status_kib('VmHWM')
    if before is None or peak is None:
        return None
    return (peak - before) / 1024


def ceiling_candidates(side: int, device: str, dtype) -> List[Candidate]:
    """Dense kernels whose best rate is the machine's practical ceiling: a
    ``side`` x ``side`` matrix product, the same work as a 1x1 convolution
    (``side`` channels over ``side`` pixels), and a 3x3 convolution of 256
    channels at 128x128, both channels-last."""
    import torch
    import torch.nn.functional as F
    a = torch.randn(side, side, device=device, dtype=dtype)
    b = torch.randn(side, side, device=device, dtype=dtype)
    pixels = int(round(side**.5))
    x1 = torch.randn(1, side, pixels, side // pixels, device=device,
                     dtype=dtype).contiguous(memory_format=torch.channels_last)
    w1 = torch.randn(side, side, 1, 1, device=device, dtype=dtype)
    x3 = torch.randn(1, 256, 128, 128, device=device,
                     dtype=dtype).contiguous(memory_format=torch.channels_last)
    w3 = torch.randn(256, 256, 3, 3, device=device, dtype=dtype)
    return [
        Candidate(f'matmul {side}', lambda: a @ b, 2. * side**3, 'ceiling'),
        Candidate(f'conv1x1 {side}', lambda: F.conv2d(x1, w1),
                  2. * side * side * pixels * (side // pixels), 'ceiling'),
        Candidate('conv3x3 256@128x128', lambda: F.conv2d(x3, w3, padding=1),
                  2. * 256 * 256 * 9 * 128 * 128, 'ceiling'),
    ]


def run_size(candidates: List[Candidate], reps: int, warmup: int,
             device: str) -> None:
    for candidate in candidates:
        for _ in range(warmup):
            candidate.run()
    for rep in range(reps):
        for candidate in candidates:
            candidate.times.append(timed(candidate.run, device))
        print(f'\r  round {rep + 1}/{reps}', end='', flush=True)
    print('\r' + ' ' * 20 + '\r', end='')


def quartiles(values: List[float]) -> Tuple[float, float]:
    if len(values) < 4:
        return min(values), max(values)
    q = statistics.quantiles(values, n=4)
    return q[0], q[2]


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------
def table(results: List[dict], ceiling: Optional[float]) -> str:
    extra = any(row.get('ready_s') is not None for row in results)
    head = (f'{"size":>9} {"model":<30} {"ms":>9} {"IQR ms":>15} '
            f'{"x R-101":>8} {"GFLOPs":>8} {"GFLOP/s":>8} {"% ceil":>7} '
            f'{"peak MiB":>9}')
    if extra:
        head += f' {"ready s":>8} {"rel err":>8}'
    lines = [head, '-' * len(head)]
    for row in results:
        lo, hi = row['iqr_ms']
        gflops = row['gflops']
        rate = gflops / (row['median_ms'] / 1e3) if gflops else None
        share = 100 * rate / ceiling if rate and ceiling else None
        cells = [
            f'{row["size"]:>9}', f'{row["model"]:<30}',
            f'{row["median_ms"]:9.1f}', f'{f"{lo:.1f}-{hi:.1f}":>15}',
            f'{row["ratio"]:8.2f}' if row['ratio'] else f'{"-":>8}',
            f'{gflops:8.1f}' if gflops else f'{"-":>8}',
            f'{rate:8.1f}' if rate else f'{"-":>8}',
            f'{share:6.0f}%' if share else f'{"-":>7}',
            f'{row["peak_mib"]:9.0f}'
            if row['peak_mib'] is not None else f'{"-":>9}'
        ]
        if extra:
            ready, err = row.get('ready_s'), row.get('rel_err')
            cells += [
                f'{ready:8.1f}' if ready is not None else f'{"-":>8}',
                f'{err:8.1e}' if err is not None else f'{"-":>8}'
            ]
        row['gflop_per_s'], row['ceiling_share'] = rate, share
        lines.append(' '.join(cells))
    return '\n'.join(lines)


def draw(results: List[dict], path: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    sizes = list(dict.fromkeys(r['size'] for r in results))
    models = list(dict.fromkeys(r['model'] for r in results))
    use_ratio = all(r['ratio'] for r in results)
    width = 0.8 / max(len(models), 1)
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(sizes) * len(models)
                                        * 0.35 + 3), 4.5))
    for i, model in enumerate(models):
        xs, ys = [], []
        for j, size in enumerate(sizes):
            row = next((r for r in results
                        if r['model'] == model and r['size'] == size), None)
            if row is not None:
                xs.append(j + (i - (len(models) - 1) / 2) * width)
                ys.append(row['ratio'] if use_ratio else row['median_ms'])
        ax.bar(xs, ys, width, label=model)
    ax.set_xticks(range(len(sizes)), sizes)
    if use_ratio:
        ax.axhline(1., color='black', linewidth=0.8)
        ax.set_ylabel('latency / ResNet-101 latency (median)')
    else:
        ax.set_ylabel('median latency (ms)')
    ax.set_xlabel('input size (HxW)')
    ax.legend(fontsize=7, ncol=2)
    ax.set_title('inference latency, batch 1')
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def machine_info(args, ceiling: Optional[float]) -> dict:
    import torch
    info = dict(
        date=datetime.datetime.now().isoformat(timespec='seconds'),
        cpu=cpu_model(),
        cores=os.cpu_count(),
        torch=torch.__version__,
        threads=torch.get_num_threads(),
        device=args.device,
        engine=args.engine,
        dtype=args.precision,
        batch=args.batch,
        reps=args.reps,
        warmup=args.warmup,
        allocator=('freed memory kept (--keep-memory)'
                   if args.keep_memory else 'system default'),
        ceiling_gflop_per_s=ceiling)
    if args.device.startswith('cuda'):
        info['gpu'] = torch.cuda.get_device_name()
    if args.engine == 'onnxruntime':
        import onnxruntime
        info['onnxruntime'] = onnxruntime.__version__
    if args.engine == 'openvino':
        import openvino
        info['openvino'] = openvino.__version__
        info['openvino_cpu_capabilities'] = openvino_cpu_capabilities()
    return info


def main() -> None:
    args = parse_args()
    models = [m for m in args.models if m != 'none']
    unknown = [m for m in models if m not in MODEL_NAMES]
    if unknown:
        fail(f'unknown model(s) {unknown}; choose among {MODEL_NAMES} or '
             '"none"')
    try:
        sizes = [parse_image_size(s) for s in args.sizes + args.extra_sizes]
    except ValueError as error:
        fail(str(error))
    for path in args.config:
        if not osp.isfile(resolve_any(path)):
            fail(f"config file '{path}' does not exist")
    if args.engine_only and args.engine not in ('onnxruntime', 'openvino'):
        fail('--engine-only needs --engine onnxruntime or openvino')
    if args.reps < 1 or args.warmup < 0:
        fail('--reps must be >= 1 and --warmup >= 0')
    if not models and not args.config:
        fail('nothing to time: give --models and/or --config')

    if args.fp16 and args.precision not in (None, 'fp16'):
        fail(f'--fp16 contradicts --precision {args.precision}; give one')
    precision = args.precision or ('fp16' if args.fp16 else 'fp32')
    args.precision = precision
    check_engine(args.engine, precision, args.device, args.config)

    if args.keep_memory and not keep_freed_memory():
        fail('--keep-memory needs glibc (mallopt); run without it, or '
             'preload an allocator that keeps freed memory')
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        fail('--device cuda asked for, but torch sees no GPU')
    dtype = torch_dtype(precision)
    if args.engine == 'compile':
        import torch._inductor.config as inductor_config

        # Weights become constants of the graph, as a deployment compiles
        # them (inference only; the benchmark never trains).
        inductor_config.freezing = True
    load_before = os.getloadavg() if hasattr(os, 'getloadavg') else None

    # Eager fp32 backbones: the reference outputs, the FLOP counts and what
    # every engine starts from.
    built = {}
    for name in models:
        print(f'building {name}')
        built[name] = build_backbone(name).to(args.device)
    workdir = tempfile.TemporaryDirectory(prefix='benchmark-')
    configs, exported = {}, {}
    # Whole models run in PyTorch in fp32 (their rows beside an engine's).
    model_dtype = torch.float32
    backbones = {}
    for path in args.config:
        model, scope, cfg = build_config_model(path, args.free_work)
        label = config_label(path)
        backbones[label] = backbone_name(cfg)
        print(f'building {path} (backbone: {backbones[label]})')
        configs[label] = (model.to(args.device, model_dtype), scope, label)
        backbone = getattr(model, 'backbone', None)
        if hasattr(backbone, 'switch_to_deploy'):
            deployed, _, _ = build_config_model(path, args.free_work)
            deployed.load_state_dict(model.state_dict())
            deployed.backbone.switch_to_deploy()
            configs[label + ' +deploy'] = (deployed.to(
                args.device, model_dtype), scope, label)
        if args.engine in ('onnxruntime', 'openvino'):
            exported[label] = (model, scope, cfg)
    reference_config = config_label(args.reference_config or (
        args.config[-1] if args.config else ''))

    ceiling_kernels = ceiling_candidates(args.matmul_size, args.device,
                                         dtype)
    results: List[dict] = []
    per_size: List[List[Candidate]] = []
    with torch.no_grad():
        for height, width in sizes:
            size = f'{height}x{width}'
            x = torch.randn(args.batch, 3, height, width, device=args.device)
            candidates = []
            for name, model in built.items():
                flops = None
                if not args.no_flops:
                    reference = built.get(name.replace('-deploy', ''), model)
                    flops = count_flops(reference, (x, ))
                if args.engine == 'eager' and precision == 'fp32':
                    run = (lambda m=model, x=x: m(x))
                    ready_s = rel_err = None
                else:
                    print(f'  {size}: getting {name} ready '
                          f'({args.engine}, {precision})')
                    run, ready_s, rel_err, path = prepare_engine(
                        args.engine, precision, model, x, model(x),
                        workdir.name, name, args.calib_images)
                candidates.append(
                    Candidate(name, run, flops, 'backbone', ready_s,
                              rel_err, precision=precision))
                if precision == 'int8':
                    # The same exported file in the engine's float
                    # precisions, timed in the same rounds.
                    for other in float_precisions(args.engine):
                        candidates.append(
                            Candidate(
                                f'{name} ({other})',
                                engines.runner(args.engine, other, path,
                                               x.numpy()),
                                flops, 'backbone', precision=other))
            for label, (model, scope, base) in configs.items():
                inputs, samples = config_inputs(model, scope, args.batch,
                                                height, width, args.device,
                                                model_dtype)
                if not (args.engine_only and label in exported or
                        args.engine_only and base in exported):
                    candidates.append(
                        Candidate(
                            label, (lambda m=model, i=inputs, s=samples: m.
                                    predict(i, s)),
                            None, 'model', config=base))
                if base == label and label in exported:
                    print(f'  {size}: exporting {label} with mmdeploy '
                          f'({args.engine}, {precision})')
                    run, ready_s, onnx_file, timed = prepare_whole_model(
                        args.engine, precision, exported[label][2], model,
                        scope, height, width, inputs, workdir.name, label,
                        args.calib_images)
                    candidate = Candidate(
                        f'{label} [{args.engine}]', run, None, 'model',
                        ready_s, engine=args.engine, config=label,
                        precision=precision)
                    candidate.parts = (timed, inputs.cpu().numpy(), model)
                    candidates.append(candidate)
                    if precision == 'int8':
                        for other in float_precisions(args.engine):
                            candidates.append(
                                Candidate(
                                    f'{label} [{args.engine} {other}]',
                                    engines.runner(args.engine, other,
                                                   onnx_file,
                                                   inputs.cpu().numpy()),
                                    None, 'model', engine=args.engine,
                                    config=label, precision=other))
            candidates.extend(ceiling_kernels)
            print(f'{size}: timing {len(candidates)} candidates, '
                  f'{args.reps} rounds')
            run_size(candidates, args.reps, args.warmup, args.device)
            per_size.append(candidates)

        # Where each exported whole model's time goes, from the engine's
        # profiler, after the timed rounds (profiling slows the engine).
        for (height, width), candidates in zip(sizes, per_size):
            for candidate in candidates:
                if candidate.parts is not None:
                    print(f'  {height}x{width}: profiling {candidate.name}')
                    candidate.parts = time_parts(
                        args.engine, precision, *candidate.parts,
                        f'{workdir.name}/{candidate.config}-backbone-'
                        f'{height}x{width}.onnx', args.calib_images)

        ceiling = ceiling_name = None
        kernel_rates = {
            k.name: k.flops / (statistics.median(k.times) / 1e3) / 1e9
            for k in ceiling_kernels if k.times
        }
        if kernel_rates:
            ceiling_name = max(kernel_rates, key=kernel_rates.get)
            ceiling = kernel_rates[ceiling_name]

        memory_ok = (not args.no_memory and not args.keep_memory
                     and args.device == 'cpu'
                     and return_freed_memory_at_once())
        for (height, width), candidates in zip(sizes, per_size):
            for candidate in candidates:
                if candidate.group == 'ceiling':
                    continue
                if memory_ok:
                    candidate.memory = peak_memory_mib(candidate.run)
                results.append(
                    dict(
                        size=f'{height}x{width}',
                        model=candidate.name,
                        kind=candidate.group,
                        median_ms=statistics.median(candidate.times),
                        iqr_ms=quartiles(candidate.times),
                        times_ms=candidate.times,
                        gflops=candidate.flops / 1e9
                        if candidate.flops else None,
                        peak_mib=candidate.memory,
                        ready_s=candidate.ready_s,
                        rel_err=candidate.rel_err,
                        engine=candidate.engine,
                        precision=candidate.precision or (
                            'fp32' if candidate.group == 'model' else
                            precision),
                        config=candidate.config,
                        backbone=backbones.get(candidate.config),
                        parts=candidate.parts))
    workdir.cleanup()
    for row in results:
        if row['kind'] == 'model':
            # The reference whole model in the same engine.
            reference = next(
                (r for r in results
                 if r['kind'] == 'model' and r['config'] == reference_config
                 and '+deploy' not in r['model']
                 and r['engine'] == row['engine']
                 and r['precision'] == row['precision']
                 and r['size'] == row['size']), None)
        else:
            reference = next(
                (r for r in results
                 if r['model'].split(' (')[0] == REFERENCE
                 and r['precision'] == row['precision']
                 and r['size'] == row['size']), None)
        row['ratio'] = (row['median_ms'] / reference['median_ms']
                        if reference else None)

    info = machine_info(args, ceiling)
    info['ceiling_kernel'] = ceiling_name
    info['ceiling_kernels_gflop_per_s'] = kernel_rates
    info['loadavg_before'] = load_before
    info['loadavg_after'] = os.getloadavg() if load_before else None
    print()
    print(table(results, ceiling))
    speedups = int8_table(results)
    if speedups:
        print('\nint8 against the same exported file in float (medians of '
              'the same rounds):')
        print(speedups)
    parts = parts_table(results)
    if parts:
        print('\nwhere the time goes (engine profiler; parts add up to the '
              'time of the graph\'s nodes):')
        print(parts)
    print()
    print(f'{info["date"]}  {info["cpu"]}, {info["cores"]} cores, '
          f'{info["threads"]} threads, torch {info["torch"]}, '
          f'{info["device"]} {info["engine"]} {info["dtype"]}, batch '
          f'{args.batch}, '
          f'{args.reps} rounds, allocator: {info["allocator"]}; load '
          f'average before {load_before}, after {info["loadavg_after"]}')
    if ceiling:
        rates = ', '.join(f'{name} {rate:.1f}'
                          for name, rate in kernel_rates.items())
        print(f'ceiling: {ceiling_name} at {ceiling:.1f} GFLOP/s (median; '
              f'{rates}); x R-101 = median / median of resnet101 at that '
              'size (whole models: of '
              f'{reference_config or "the last --config"} in the same '
              'engine); peak MiB = resident-set growth during one forward')
    if args.json:
        with open(args.json, 'w') as out:
            json.dump(dict(machine=info, results=results), out, indent=1)
        print(f'wrote {args.json}')
    if args.png:
        draw(results, args.png)
        print(f'wrote {args.png}')


if __name__ == '__main__':
    main()
