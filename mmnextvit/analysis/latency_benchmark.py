# Copyright (c) mmnextvit contributors. All rights reserved.
"""Inference latency of Next-ViT against CNN and ViT backbones on this
machine, and of whole detection / segmentation models: the run behind
``tools/analysis_tools/benchmark.py`` (:func:`check`, then :func:`run`;
:mod:`.latency_report` shows the results).

Engines and precisions (``engine``, ``precision``) apply to every
backbone alike. ``eager`` runs the PyTorch modules, ``compile`` runs them
through ``torch.compile`` (inductor, with ``freezing``: weights folded as
constants, as for deployment), ``onnxruntime`` and ``openvino`` run an ONNX
file of each model exported at each size (``torch.onnx.export`` with the
TorchScript exporter, ``dynamo=False``, opset 17; Next-ViT after
``switch_to_deploy()`` where the name says ``-deploy``). ``bf16`` or
``fp16`` casts weights and input for ``eager`` and ``compile``, and sets
OpenVINO's ``INFERENCE_PRECISION_HINT`` on the fp32 file (ONNX Runtime's CPU
provider runs these graphs in fp32 only). The time a model takes to get
ready at a size (compilation with the first call, export and session
creation) is reported apart (``ready s``), never inside the latencies, and
each engine's output is compared with the eager fp32 output of the same
model (``rel err``: largest absolute difference over the largest magnitude).
``int8`` quantizes each exported file for the engine
(:mod:`mmnextvit.deploy.quantize`, as the int8 deploy configs do; whole
models with their task's int8 deploy config settings), calibrated on
``calib_images`` generated shapes images at the size, the same for every
model, and times it beside the same float file in the engine's float
precisions (OpenVINO fp32 and, where the CPU has it, bf16; ONNX Runtime
fp32) in the same rounds; ``x R-101`` compares like with like, and a
summary gives each model's int8 speed-up over its float file
(:mod:`.engine_setup`).

Method. Every model and size is warmed up, then the models of one size are
timed in turns (one forward each, ``reps`` rounds), so a change of machine
load hits all of them alike; the table gives the median and the spread
(interquartile range). Inputs are plain NCHW fp32 tensors, batch 1, under
``torch.no_grad()`` in eval mode. Three dense kernels are timed in the same
rounds: a square matrix product (MKL or cuBLAS), and a 1x1 and a 3x3
convolution in channels-last layout (oneDNN or cuDNN). The fastest rate among
them is the practical ceiling of the machine, and each model's achieved FLOP
rate is given as a share of it (:mod:`.latency`). (The matrix product alone
is not a ceiling everywhere: on the AMD CPU of docs/benchmarks.md MKL's fp32
product runs at about 200 GFLOP/s while oneDNN's convolutions reach
400-500.) FLOPs are MMEngine's counter (``FlopAnalyzer``, with the rule for
fused attention from ``get_flops.py``) times two: one multiply-add = 2
FLOPs, like the ceiling.

Peak memory is measured after all timings: the growth of the process's
resident set (``VmHWM`` after resetting it through ``/proc/self/clear_refs``)
during one forward, with glibc told to return every large block to the
system at once (so freed activations do not hide in the heap). It counts
activations and scratch buffers, not the weights. Linux only; '-' elsewhere.

Allocator. With glibc's defaults every block over 32 MiB is a fresh mmap,
page-faulted and zeroed again at each forward unless an earlier free left a
large enough hole in the heap; at detection sizes that makes a network's
time depend on what ran before it in the process (ResNet-101 at 800x1216:
900 to 1350 ms on the machine of docs/benchmarks.md). ``keep_memory``
makes glibc keep freed memory for reuse, as tcmalloc and jemalloc do, for
all models alike: times that depend on the arithmetic, not the allocator's
history. It skips the memory pass (the heap it keeps would hide part of
the peaks).

Whole models (``configs``) run ``model.predict`` on a preprocessed input
with the stock test settings, except that the work of the heads is fixed
(unless ``free_work``): the proposal NMS keeps all ``max_per_img``
proposals (1000 in the COCO configs) and the RoI head keeps its 100 best
detections whatever their score, so models with random weights do the work
of a trained one, equally for every backbone. A backbone's ``init_cfg`` is
dropped (nothing is downloaded). Configs whose
backbone has ``switch_to_deploy`` are also timed after it (``+deploy``).
With ``onnxruntime`` or ``openvino`` each whole model is also exported at
each size the way ``tools/deployment/deploy.py`` exports it (mmdeploy, the
static deploy config of its task in ``configs/deploy/`` at that size; for
Mask R-CNN the graph keeps its 100 best detections whatever their score,
like the PyTorch rows; the graph holds standard ONNX operators only,
``RoiAlign`` and ``NonMaxSuppression`` among them, so both engines run it)
and timed in the engine from the preprocessed input to the graph's outputs
(mmdeploy pastes the masks outside the graph), OpenVINO at the precision
(:mod:`.whole_models`). ``engine_only`` leaves out the PyTorch rows. After
the timed rounds each exported model is profiled with the engine's own
profiler (:func:`mmnextvit.deploy.engines.time_by_part`): the time of its
backbone, its neck + head and its post-processing, and that of its
backbone exported alone at the same size, so that a model's time can be
traced to its parts. Each whole model's backbone is printed and recorded
(``ResNetV1c-50``...). Whole-model ratios are against the model of
``reference_config`` (default: the last of ``configs``) in the same engine.
"""
import dataclasses
import datetime
import os
import os.path as osp
import statistics
import tempfile
from typing import Callable, Dict, List, Optional, Tuple

from mmnextvit.cli.args import parse_image_size
from mmnextvit.cli.errors import ToolError
from mmnextvit.config_resolver import resolve_any
from mmnextvit.deploy import engines
from . import engine_setup, latency_report, whole_models
from .latency import (Candidate, ceiling_candidates, ceiling_rates,
                      peak_memory_mib, quartiles, run_rounds)
from .machine import cpu_model
from .memory import keep_freed_memory, return_freed_memory_at_once

__all__ = [
    'BACKBONES', 'MODEL_NAMES', 'DEFAULT_SIZES', 'Settings', 'check',
    'build_backbone', 'count_flops', 'machine_info', 'run'
]

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


@dataclasses.dataclass
class Settings:
    """One run: what to time, how, and in which engine (the flags of
    ``benchmark.py``; sizes as ``'HxW'``)."""
    models: List[str]
    sizes: List[str]
    configs: List[str] = dataclasses.field(default_factory=list)
    reference_config: Optional[str] = None
    reps: int = 10
    warmup: int = 2
    threads: Optional[int] = None
    batch: int = 1
    device: str = 'cpu'
    engine: str = 'eager'
    precision: str = 'fp32'
    calib_images: int = 20
    matmul_size: int = 4096
    flops: bool = True
    memory: bool = True
    keep_memory: bool = False
    free_work: bool = False
    engine_only: bool = False


def check(settings: Settings) -> None:
    """Everything that can be refused before any model is built.

    Raises:
        ToolError: an unknown model, a size that is not HxW or too small,
            a missing config, a combination of
            engine, precision and device that cannot run, nothing to time.
    """
    unknown = [m for m in settings.models if m not in MODEL_NAMES]
    if unknown:
        raise ToolError(f'unknown model(s) {unknown}; choose among '
                        f'{MODEL_NAMES} or "none"')
    for size in settings.sizes:
        try:
            parse_image_size(size)
        except ValueError as error:
            raise ToolError(str(error)) from None
    for path in settings.configs:
        if not osp.isfile(resolve_any(path)):
            raise ToolError(f"config file '{path}' does not exist")
    if settings.engine_only and settings.engine not in ('onnxruntime',
                                                        'openvino'):
        raise ToolError('--engine-only needs --engine onnxruntime or '
                        'openvino')
    if settings.reps < 1 or settings.warmup < 0:
        raise ToolError('--reps must be >= 1 and --warmup >= 0')
    if not settings.models and not settings.configs:
        raise ToolError('nothing to time: give --models and/or --config')
    engine_setup.check_engine(settings.engine, settings.precision,
                              settings.device, settings.configs)


def build_backbone(name: str):
    """One of :data:`MODEL_NAMES` with random weights, in eval mode
    (``-deploy``: after ``switch_to_deploy()``)."""
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


def count_flops(module, inputs) -> Optional[float]:
    """FLOPs (2 per multiply-add) of ``module(*inputs)``; None when the
    counter cannot trace it."""
    from .flops import total_flops
    try:
        return total_flops(module, inputs)
    except Exception as error:  # tracing whole models may fail
        print(f'benchmark: FLOPs not counted for {type(module).__name__}: '
              f'{str(error).splitlines()[0][:100]}')
        return None


def machine_info(settings: Settings, ceiling: Optional[float]) -> dict:
    """What the JSON records about the machine and the run's settings."""
    import torch
    info = dict(
        date=datetime.datetime.now().isoformat(timespec='seconds'),
        cpu=cpu_model(),
        cores=os.cpu_count(),
        torch=torch.__version__,
        threads=torch.get_num_threads(),
        device=settings.device,
        engine=settings.engine,
        dtype=settings.precision,
        batch=settings.batch,
        reps=settings.reps,
        warmup=settings.warmup,
        allocator=('freed memory kept (--keep-memory)'
                   if settings.keep_memory else 'system default'),
        ceiling_gflop_per_s=ceiling)
    if settings.device.startswith('cuda'):
        info['gpu'] = torch.cuda.get_device_name()
    if settings.engine == 'onnxruntime':
        import onnxruntime
        info['onnxruntime'] = onnxruntime.__version__
    if settings.engine == 'openvino':
        import openvino
        info['openvino'] = openvino.__version__
        info['openvino_cpu_capabilities'] = \
            engine_setup.openvino_cpu_capabilities()
    return info


def _prepare_process(settings: Settings) -> None:
    """Process-wide settings of the run: allocator, threads, inductor.

    Raises:
        ToolError: the allocator or the device asked for is not here.
    """
    if settings.keep_memory and not keep_freed_memory():
        raise ToolError('--keep-memory needs glibc (mallopt); run without '
                        'it, or preload an allocator that keeps freed memory')
    import torch
    if settings.threads:
        torch.set_num_threads(settings.threads)
    if settings.device.startswith('cuda') and not torch.cuda.is_available():
        raise ToolError('--device cuda asked for, but torch sees no GPU')
    if settings.engine == 'compile':
        import torch._inductor.config as inductor_config

        # Weights become constants of the graph, as a deployment compiles
        # them (inference only; the benchmark never trains).
        inductor_config.freezing = True


def _build_configs(settings: Settings):
    """``(configs, exported, backbones)``: label -> (PyTorch model in fp32,
    scope, label of its config) for every PyTorch row (``+deploy`` rows
    too), label -> (model, scope, cfg) for the whole models to export, and
    label -> backbone name."""
    import torch
    configs, exported, backbones = {}, {}, {}
    for path in settings.configs:
        model, scope, cfg = whole_models.build_config_model(
            path, settings.free_work)
        label = whole_models.config_label(path)
        backbones[label] = whole_models.backbone_name(cfg)
        print(f'building {path} (backbone: {backbones[label]})')
        configs[label] = (model.to(settings.device, torch.float32), scope,
                          label)
        backbone = getattr(model, 'backbone', None)
        if hasattr(backbone, 'switch_to_deploy'):
            deployed, _, _ = whole_models.build_config_model(
                path, settings.free_work)
            deployed.load_state_dict(model.state_dict())
            deployed.backbone.switch_to_deploy()
            configs[label + ' +deploy'] = (deployed.to(
                settings.device, torch.float32), scope, label)
        if settings.engine in ('onnxruntime', 'openvino'):
            exported[label] = (model, scope, cfg)
    return configs, exported, backbones


def _float_files(runtime: str, path: str, feed, name: Callable[[str], str],
                 **fields) -> List[Candidate]:
    """The exported float file ``path`` in each float precision of the
    engine ``runtime``, timed beside the int8 file quantized from it;
    ``fields`` are the rows' other :class:`Candidate` fields."""
    return [
        Candidate(name(other), engines.runner(runtime, other, path, feed),
                  precision=other, **fields)
        for other in engine_setup.float_precisions(runtime)
    ]


def _backbone_candidates(settings: Settings, built: dict, x, size: str,
                         workdir: str) -> List[Candidate]:
    """The backbones at one input ``x``; for int8 each followed by the same
    exported file in the engine's float precisions."""
    engine, precision = settings.engine, settings.precision
    candidates = []
    for name, model in built.items():
        flops = None
        if settings.flops:
            reference = built.get(name.replace('-deploy', ''), model)
            flops = count_flops(reference, (x, ))
        path = None
        if engine == 'eager' and precision == 'fp32':
            run = (lambda m=model, x=x: m(x))
            ready_s = rel_err = None
        else:
            print(f'  {size}: getting {name} ready ({engine}, {precision})')
            run, ready_s, rel_err, path = engine_setup.prepare_engine(
                engine, precision, model, x, model(x), workdir, name,
                settings.calib_images)
        candidates.append(
            Candidate(name, run, flops, 'backbone', ready_s, rel_err,
                      precision=precision))
        if precision == 'int8':
            candidates += _float_files(engine, path, x.numpy(),
                                       lambda other: f'{name} ({other})',
                                       flops=flops, group='backbone')
    return candidates


def _model_candidates(settings: Settings, configs: dict, exported: dict,
                      height: int, width: int,
                      workdir: str) -> List[Candidate]:
    """The whole models at one size: their PyTorch rows (unless
    ``engine_only``), and each exported one in the engine (for int8 also
    its float file in the engine's float precisions)."""
    import torch
    engine, precision = settings.engine, settings.precision
    size = f'{height}x{width}'
    candidates = []
    for label, (model, scope, base) in configs.items():
        inputs, samples = whole_models.config_inputs(
            model, scope, settings.batch, height, width, settings.device,
            torch.float32)
        if not (settings.engine_only and label in exported
                or settings.engine_only and base in exported):
            candidates.append(
                Candidate(
                    label,
                    (lambda m=model, i=inputs, s=samples: m.predict(i, s)),
                    None, 'model', config=base))
        if base != label or label not in exported:
            continue
        print(f'  {size}: exporting {label} with mmdeploy ({engine}, '
              f'{precision})')
        feed = inputs.cpu().numpy()
        run, ready_s, onnx_file, timed_file = \
            whole_models.prepare_whole_model(
                engine, precision, exported[label][2], model, scope, height,
                width, inputs, workdir, label, settings.calib_images)
        candidate = Candidate(
            f'{label} [{engine}]', run, None, 'model', ready_s,
            engine=engine, config=label, precision=precision)
        candidate.parts = (timed_file, feed, model)
        candidates.append(candidate)
        if precision == 'int8':
            candidates += _float_files(
                engine, onnx_file, feed,
                lambda other: f'{label} [{engine} {other}]', flops=None,
                group='model', engine=engine, config=label)
    return candidates


def _row(candidate: Candidate, size: str, precision: str,
         backbones: dict) -> dict:
    return dict(
        size=size,
        model=candidate.name,
        kind=candidate.group,
        median_ms=statistics.median(candidate.times),
        iqr_ms=quartiles(candidate.times),
        times_ms=candidate.times,
        gflops=candidate.flops / 1e9 if candidate.flops else None,
        peak_mib=candidate.memory,
        ready_s=candidate.ready_s,
        rel_err=candidate.rel_err,
        engine=candidate.engine,
        precision=candidate.precision
        or ('fp32' if candidate.group == 'model' else precision),
        config=candidate.config,
        backbone=backbones.get(candidate.config),
        parts=candidate.parts)


def run(settings: Settings) -> Tuple[List[dict], dict, str]:
    """Time everything ``settings`` names (see the module docstring);
    ``(results, info, reference_config)``: one row per model and size
    (:func:`.latency_report.complete` done), the machine and the run's
    settings, and the label of the whole model ratios are taken against.

    Raises:
        ToolError: a setting this machine cannot run, a config that does
            not build, an int8 quantization that fails.
    """
    check(settings)
    _prepare_process(settings)
    import torch
    precision = settings.precision
    load_before = os.getloadavg() if hasattr(os, 'getloadavg') else None

    # Eager fp32 backbones: the reference outputs, the FLOP counts and what
    # every engine starts from.
    built = {}
    for name in settings.models:
        print(f'building {name}')
        built[name] = build_backbone(name).to(settings.device)
    configs, exported, backbones = _build_configs(settings)
    reference_config = whole_models.config_label(
        settings.reference_config
        or (settings.configs[-1] if settings.configs else ''))

    sizes = [parse_image_size(s) for s in settings.sizes]
    kernels = ceiling_candidates(settings.matmul_size, settings.device,
                                 engine_setup.torch_dtype(precision))
    per_size: List[List[Candidate]] = []
    with torch.no_grad(), tempfile.TemporaryDirectory(
            prefix='benchmark-') as workdir:
        for height, width in sizes:
            size = f'{height}x{width}'
            x = torch.randn(settings.batch, 3, height, width,
                            device=settings.device)
            candidates = _backbone_candidates(settings, built, x, size,
                                              workdir)
            candidates += _model_candidates(settings, configs, exported,
                                            height, width, workdir)
            candidates.extend(kernels)
            print(f'{size}: timing {len(candidates)} candidates, '
                  f'{settings.reps} rounds')
            run_rounds(candidates, settings.reps, settings.warmup,
                       settings.device)
            per_size.append(candidates)

        # Where each exported whole model's time goes, from the engine's
        # profiler, after the timed rounds (profiling slows the engine).
        for (height, width), candidates in zip(sizes, per_size):
            for candidate in candidates:
                if candidate.parts is not None:
                    print(f'  {height}x{width}: profiling {candidate.name}')
                    candidate.parts = whole_models.time_parts(
                        settings.engine, precision, *candidate.parts,
                        f'{workdir}/{candidate.config}-backbone-'
                        f'{height}x{width}.onnx', settings.calib_images)

        rates = ceiling_rates(kernels)
        ceiling_name = max(rates, key=rates.get) if rates else None
        ceiling = rates[ceiling_name] if rates else None

        memory_ok = (settings.memory and not settings.keep_memory
                     and settings.device == 'cpu'
                     and return_freed_memory_at_once())
        results = []
        for (height, width), candidates in zip(sizes, per_size):
            for candidate in candidates:
                if candidate.group == 'ceiling':
                    continue
                if memory_ok:
                    candidate.memory = peak_memory_mib(candidate.run)
                results.append(
                    _row(candidate, f'{height}x{width}', precision,
                         backbones))
    latency_report.complete(results, ceiling, reference_config)

    info = machine_info(settings, ceiling)
    info['ceiling_kernel'] = ceiling_name
    info['ceiling_kernels_gflop_per_s'] = rates
    info['loadavg_before'] = load_before
    info['loadavg_after'] = os.getloadavg() if load_before else None
    return results, info, reference_config
