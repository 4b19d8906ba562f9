# Copyright (c) mmnextvit contributors. All rights reserved.
"""Next-ViT against torchvision's ResNet and timm's Next-ViT on one GPU:
inference latency (fp32, fp16, bf16; eager and ``torch.compile``) and
training throughput (autocast bf16 and fp16), in one run of a few minutes.

Run it with ``tools/analysis_tools/gpu_benchmark.sh`` (which brings mmengine
and an mmcv without compiled ops to a machine that has neither); it needs
torch, and torchvision and timm for their models (a model whose package is
missing is reported as not available, the rest still runs). Nothing here
imports mmdet, mmseg, mmdeploy or mmcv's compiled ops.

Models, each built the same way: random weights drawn from one seeded
generator (:func:`seed_weights`), batch norms folded for inference (Next-ViT
by its ``switch_to_deploy()``, timm's Next-ViT by its blocks'
``reparameterize()``, which folds the pre-norms; ResNet by torch's
``torch.fx.experimental.optimization.fuse``), the four stage outputs
returned (ResNet: ``layer1``-``layer4``, the trunk mmdet's pytorch-style
ResNet has; timm: ``forward_intermediates``). Weights and inputs are cast
to the precision (no autocast) and laid out channels-last, the layout
cuDNN's tensor-core kernels read. fp32 is strict fp32 (TF32 off for
convolutions and matrix products); ``cudnn.benchmark`` is on for every
model.

Method. Latency: CUDA events around each forward, after warm-up calls; the
median and interquartile range of ``reps`` calls. In eager mode the models
of one size and precision are timed in turns, one forward each per round.
Compiled models (``torch.compile`` with static shapes; on a GPU in mode
``reduce-overhead``, which replays CUDA graphs, see
:data:`DEFAULT_COMPILE_MODE`) are compiled in parallel worker processes,
one per model and precision, each with an equal share of the GPU's memory,
while the main process checks timm's outputs against ours and counts
FLOPs. Then the main process times the eager models, after that each
worker times its compiled model alone, one worker at a time, the others
idle, and last the main process times the training steps. Compilation
time is reported apart (``ready_s``), never inside the latencies.
Training: forward, a loss over the four outputs, backward and an AdamW step
under autocast (fp16 with a gradient scaler), models in training mode;
images per second over ``train_steps`` steps after warm-up, and the peak of
``torch.cuda.max_memory_allocated``. A time budget bounds the run: a cell
not started before it runs out is reported as skipped, with the reason.
"""
import datetime
import importlib.util
import json
import math
import multiprocessing
import os
import os.path as osp
import platform
import re
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from mmnextvit.cli.errors import first_line
from mmnextvit.compat.torch import cudagraph_mark_step_begin, grad_scaler
from .flops import total_flops
from .machine import cpu_model
from .output_error import relative_error

__all__ = [
    'MODELS', 'PRECISIONS', 'GPU_SIZES', 'GPU_PRESET', 'CPU_REHEARSAL',
    'parse_cell_size',
    'seed_weights', 'build_model', 'timm_parity', 'run', 'write_reports'
]

MODELS = ('nextvit-s', 'nextvit-b', 'nextvit-l', 'resnet50', 'resnet101',
          'timm-nextvit-s')
REFERENCE = 'resnet101'
PRECISIONS = {
    'fp32': torch.float32,
    'fp16': torch.float16,
    'bf16': torch.bfloat16
}
MODES = ('eager', 'compile')
# HxWxbatch: the upstream classification latencies are at batch 8, 224x224.
GPU_SIZES = ('224x224x8', '512x512x1', '800x1344x1')
GPU_TRAIN_SIZE = '800x1344x2'
# torch.compile's mode per device. On the GPU, 'reduce-overhead' replays
# CUDA graphs: at these batch sizes eager PyTorch and the default mode are
# bound by kernel launches (an H200 took 6.2-6.7 ms for Next-ViT-S in fp16
# at 224x224x8, 512x512 and 800x1344 alike), so only graphs time the GPU.
DEFAULT_COMPILE_MODE = {'cuda': 'reduce-overhead', 'cpu': 'default'}
# torch.compile's backend: inductor, except in the CPU rehearsal (below).
DEFAULT_COMPILE_BACKEND = 'inductor'
COMPILE_MODES = ('default', 'reduce-overhead', 'max-autotune',
                 'max-autotune-no-cudagraphs')
# The one ratio that stands for the paper's TensorRT figure.
HEADLINE = dict(model='nextvit-s', mode='compile', precision='fp16',
                size='224x224x8')
# The run's settings on a GPU ...
GPU_PRESET = dict(
    sizes=GPU_SIZES,
    train_size=GPU_TRAIN_SIZE,
    precisions=tuple(PRECISIONS),
    reps=30,
    warmup=5,
    train_steps=10,
)
# ... and the same steps on the CPU at a tiny size (a rehearsal, not a
# benchmark). Its compiled cells go through dynamo's graph capture and AOT
# autograd, as on the GPU, then run those graphs eagerly ('aot_eager'):
# inductor's CPU code generation, C++ that a GPU never runs, took 13-48 s
# per model and precision on 2 CPU cores (torch 2.1 and 2.13, 2026-12-07).
# benchmark.py --engine compile times inductor's CPU code.
CPU_REHEARSAL = dict(
    sizes=('64x64x2', ),
    train_size='64x96x2',
    precisions=('fp32', 'bf16'),
    reps=3,
    warmup=1,
    train_steps=2,
    compile_backend='aot_eager',
)

_NEXTVIT_ARCH = {'nextvit-s': 'small', 'nextvit-b': 'base',
                 'nextvit-l': 'large'}


class ModelUnavailable(RuntimeError):
    """A model's package cannot be imported here."""


def parse_cell_size(text: str) -> Tuple[int, int, int]:
    """``'224x224x8'`` -> ``(224, 224, 8)`` (height, width, batch); the
    batch defaults to 1 (``'512x512'``)."""
    parts = text.lower().split('x')
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (2, 3) or min(values) < 1:
        raise ValueError(f"size '{text}' is not HxW or HxWxBATCH; write it "
                         'as e.g. 224x224x8')
    if min(values[:2]) < 32:
        raise ValueError(f"size '{text}' is too small; Next-ViT takes at "
                         'least 32x32')
    return values[0], values[1], values[2] if len(values) == 3 else 1


# --------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------
# The last layer of each residual branch (Next-ViT in our names and timm's;
# ResNet's last norm of a bottleneck): drawn 5 times smaller, so that the
# activations stay of order one through the blocks. Without it Next-ViT-S's
# stage-4 maps reach ~6e3, its attention saturates and float rounding
# differences grow to 1e-2 relative (seen on the CPU).
_RESIDUAL_END = re.compile(
    r'(mlp\.(conv2|fc2)|mhca\.projection|e_mhsa\.proj|bn3)\.weight$')


def seed_weights(module: nn.Module, seed: int = 0) -> nn.Module:
    """Give every weight and norm statistic of ``module`` a value drawn
    from one generator seeded with ``seed``, in the order of its state
    dict: weights with a 1/sqrt(fan-in) scale, biases small, batch-norm
    scales and variances near 1, means near 0 (so that folding a norm is
    not the identity), residual branches ending 5 times smaller."""
    generator = torch.Generator().manual_seed(seed)
    norms = {
        name
        for name, child in module.named_modules()
        if isinstance(child, nn.modules.batchnorm._BatchNorm)
    }
    state = module.state_dict()
    for key, value in state.items():
        if not value.is_floating_point():
            continue
        owner, _, leaf = key.rpartition('.')
        shape = tuple(value.shape)
        if owner in norms and leaf in ('weight', 'running_var'):
            new = torch.rand(shape, generator=generator) * 0.5 + 0.75
        elif owner in norms and leaf == 'running_mean':
            new = torch.randn(shape, generator=generator) * 0.1
        elif len(shape) <= 1:
            new = torch.randn(shape, generator=generator) * 0.02
        else:
            fan_in = math.prod(shape[1:])
            new = torch.randn(shape, generator=generator) / fan_in**0.5
        if _RESIDUAL_END.search(key):
            new = new * 0.2
        value.copy_(new)
    return module


class ResNetTrunk(nn.Module):
    """torchvision's ResNet up to ``layer4``, returning the four stage
    outputs (what mmdet's pytorch-style ResNet returns)."""

    def __init__(self, resnet: nn.Module):
        super().__init__()
        self.stem = nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu,
                                  resnet.maxpool)
        self.layer1, self.layer2 = resnet.layer1, resnet.layer2
        self.layer3, self.layer4 = resnet.layer3, resnet.layer4

    def forward(self, x):
        c2 = self.layer1(self.stem(x))
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        return c2, c3, c4, self.layer4(c4)


class TimmStages(nn.Module):
    """A timm model's four stage outputs (``forward_intermediates``)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        return tuple(
            self.model.forward_intermediates(x, intermediates_only=True))


def _import(package: str):
    try:
        return __import__(package)
    except Exception as error:  # ImportError, or a broken build
        raise ModelUnavailable(
            f'{package} not importable ({type(error).__name__}: '
            f'{str(error).splitlines()[0] if str(error) else ""})') from None


def _nextvit(name: str, training: bool) -> nn.Module:
    from mmnextvit.models import NextViT
    model = seed_weights(NextViT(arch=_NEXTVIT_ARCH[name]))
    if not training:
        model.eval().switch_to_deploy()
    return model


def _reparameterize(model: nn.Module) -> None:
    """timm's fold of each block's pre-norms (its ``reparameterize()``)."""
    for module in model.modules():
        if hasattr(module, 'reparameterize'):
            module.reparameterize()


def _timm_nextvit(training: bool) -> nn.Module:
    """timm's ``nextvit_small`` carrying the weights of our seeded
    Next-ViT-S (renamed by :func:`upstream_to_timm`)."""
    timm = _import('timm')
    from mmnextvit.models import NextViT
    from mmnextvit.models.checkpoint_layouts import upstream_to_timm
    ours = seed_weights(NextViT(arch='small'))
    model = timm.create_model('nextvit_small', pretrained=False)
    state = upstream_to_timm(ours.state_dict(), ours.arch['depths'])
    result = model.load_state_dict(state, strict=False)
    # Detection-mode Next-ViT has no classifier and no final norm.
    left = [
        k for k in result.missing_keys
        if not k.startswith(('norm.', 'head.'))
    ]
    if left or result.unexpected_keys:
        raise RuntimeError(
            f'timm nextvit_small does not take our Next-ViT-S weights: '
            f'missing {left[:3]}, unexpected {result.unexpected_keys[:3]}')
    model = TimmStages(model)
    if not training:
        _reparameterize(model.eval())
    return model


def _resnet(name: str, training: bool) -> nn.Module:
    torchvision = _import('torchvision')
    depth = int(name[len('resnet'):])
    model = seed_weights(
        ResNetTrunk(getattr(torchvision.models, f'resnet{depth}')()))
    if not training:
        from torch.fx.experimental.optimization import fuse
        model = fuse(model.eval())
    return model


def build_model(name: str,
                device: torch.device,
                dtype: torch.dtype = torch.float32,
                training: bool = False) -> nn.Module:
    """One of :data:`MODELS` on ``device``, channels-last: in inference
    form (eval mode, norms folded, weights in ``dtype``) or, with
    ``training``, in training mode with fp32 weights (for autocast).

    Raises:
        ModelUnavailable: its package (torchvision, timm) is missing.
    """
    if name in _NEXTVIT_ARCH:
        model = _nextvit(name, training)
    elif name.startswith('resnet'):
        model = _resnet(name, training)
    elif name == 'timm-nextvit-s':
        model = _timm_nextvit(training)
    else:
        raise ValueError(f'unknown model {name!r}; use one of {MODELS}')
    if not training:
        model = model.to(dtype)
    return model.to(device, memory_format=torch.channels_last)


def make_input(size: str, device: torch.device, dtype: torch.dtype,
               seed: int = 1) -> torch.Tensor:
    height, width, batch = parse_cell_size(size)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, height, width, generator=generator)
    return x.to(device, dtype).contiguous(memory_format=torch.channels_last)


def set_numerics(device: torch.device) -> None:
    """Strict fp32 (no TF32) and cuDNN's autotuner, for every model."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = device.type == 'cuda'


# --------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def time_call(fn: Callable, device: torch.device) -> float:
    """Milliseconds one call of ``fn`` takes (CUDA events on a GPU)."""
    if device.type == 'cuda':
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end)
    begin = time.perf_counter()
    fn()
    return (time.perf_counter() - begin) * 1e3


def summary(times: Sequence[float]) -> dict:
    if len(times) >= 4:
        quartiles = statistics.quantiles(times, n=4)
        low, high = quartiles[0], quartiles[2]
    else:
        low, high = min(times), max(times)
    return dict(
        median_ms=statistics.median(times), q1_ms=low, q3_ms=high,
        reps=len(times))


def timm_parity(device: torch.device) -> dict:
    """How far timm's ``nextvit_small``, given our seeded Next-ViT-S
    weights, is from our Next-ViT-S in fp32: modules against modules (eval
    mode, norms unfolded) and each one's folded inference form."""
    from mmnextvit.models import NextViT
    ours = seed_weights(NextViT(arch='small')).eval().to(device)
    x = make_input('224x224x2', device, torch.float32).contiguous()
    theirs = _timm_nextvit(training=True).eval().to(device)
    with torch.no_grad():
        ours_out = ours(x)
        theirs_out = theirs(x)
        ours.switch_to_deploy()
        _reparameterize(theirs)
        ours_deployed = ours(x)
        theirs_deployed = theirs(x)
    return dict(
        input='224x224x2 fp32',
        modules=relative_error(theirs_out, ours_out),
        deployed=relative_error(theirs_deployed, ours_deployed),
        ours_deployed_vs_modules=relative_error(ours_deployed, ours_out),
        shapes=[list(t.shape) for t in ours_out])


def count_flops(model: nn.Module, size: str,
                device: torch.device) -> Optional[float]:
    """FLOPs of one image at ``size`` (:func:`~.flops.total_flops`: one
    multiply-add = 2 FLOPs); None where it cannot trace the model."""
    height, width, _ = parse_cell_size(size)
    x = make_input(f'{height}x{width}x1', device, torch.float32)
    try:
        return total_flops(model, (x, ))
    except Exception:  # a model the jit tracer cannot follow
        return None


def eager_latency(references: Dict[str, nn.Module],
                  unavailable: Dict[str, Exception], sizes: Sequence[str],
                  precisions: Sequence[str], device: torch.device,
                  warmup: int, reps: int, end_time: float,
                  log: Callable) -> List[dict]:
    """Latency of the eager models (``references``: each model's fp32
    inference form, from :func:`build_model`; ``unavailable``: the models
    that could not be built, with the reason); those of one size and
    precision timed in turns. Reduced-precision outputs are compared with
    fp32."""
    rows = [
        dict(model=name, mode='eager', precision=precision, size=size,
             status=f'not available: {error}')
        for name, error in unavailable.items() for precision in precisions
        for size in sizes
    ]
    for precision in precisions:
        dtype = PRECISIONS[precision]
        built = {
            name: (reference if dtype == torch.float32 else build_model(
                name, device, dtype))
            for name, reference in references.items()
        }
        for size in sizes:
            if time.time() > end_time:
                rows += [
                    dict(model=name, mode='eager', precision=precision,
                         size=size, status='skipped: time budget')
                    for name in built
                ]
                continue
            inputs = make_input(size, device, dtype)
            fp32_inputs = make_input(size, device, torch.float32)
            cells = {}
            with torch.no_grad():
                for name, model in built.items():
                    try:
                        out = model(inputs)
                        for _ in range(warmup):
                            model(inputs)
                        error = 0.
                        if dtype != torch.float32:
                            error = relative_error(
                                out, references[name](fp32_inputs))
                        cells[name] = dict(times=[], rel_err=error)
                    except Exception as failure:
                        rows.append(
                            dict(model=name, mode='eager',
                                 precision=precision, size=size,
                                 status=f'failed: {_first_line(failure)}'))
                _sync(device)
                for _ in range(reps):
                    for name, cell in cells.items():
                        cell['times'].append(
                            time_call(lambda: built[name](inputs), device))
            for name, cell in cells.items():
                row = dict(model=name, mode='eager', precision=precision,
                           size=size, status='ok',
                           rel_err_vs_fp32=cell['rel_err'],
                           **summary(cell['times']))
                rows.append(row)
                log(f'eager {precision} {size} {name}: '
                    f"{row['median_ms']:.3f} ms")
        built.clear()  # free this precision's copies
        if device.type == 'cuda':
            torch.cuda.empty_cache()
    return rows


def training_throughput(models: Sequence[str], size: str,
                        precisions: Sequence[str], device: torch.device,
                        steps: int, warmup: int, end_time: float,
                        log: Callable) -> List[dict]:
    """Images per second of forward + loss + backward + AdamW step under
    autocast, and the peak of allocated device memory."""
    rows = []
    _, _, batch = parse_cell_size(size)
    for precision in precisions:
        dtype = PRECISIONS[precision]
        for name in models:
            row = dict(model=name, precision=precision, size=size)
            rows.append(row)
            if time.time() > end_time:
                row['status'] = 'skipped: time budget'
                continue
            try:
                model = build_model(name, device, training=True)
            except ModelUnavailable as error:
                row['status'] = f'not available: {error}'
                continue
            x = make_input(size, device, torch.float32)
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
            scaler = grad_scaler(device.type, enabled=dtype == torch.float16)

            def step():
                optimizer.zero_grad(set_to_none=True)
                with torch.autocast(device.type, dtype=dtype):
                    loss = sum(out.float().mean() for out in model(x))
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()

            try:
                for _ in range(warmup):
                    step()
                _sync(device)
                if device.type == 'cuda':
                    torch.cuda.reset_peak_memory_stats(device)
                times = [time_call(step, device) for _ in range(steps)]
            except Exception as failure:
                row['status'] = f'failed: {_first_line(failure)}'
                continue
            row.update(status='ok', **summary(times))
            row['images_per_s'] = batch * 1e3 / row['median_ms']
            if device.type == 'cuda':
                row['peak_mib'] = torch.cuda.max_memory_allocated(
                    device) / 2**20
            log(f"train {precision} {size} {name}: "
                f"{row['images_per_s']:.1f} img/s")
            model = optimizer = None  # free them before the next model
            if device.type == 'cuda':
                torch.cuda.empty_cache()
    return rows


def _first_line(error: BaseException) -> str:
    """The error's type and the first line of its message."""
    return f'{type(error).__name__}: {first_line(error)}'


# --------------------------------------------------------------------------
# Compiled models: one worker process per model and precision
# --------------------------------------------------------------------------
def _compile_worker(conn, name: str, precision: str, sizes: Sequence[str],
                    device_name: str, warmup: int, reps: int, deadline: float,
                    compile_mode: str, compile_backend: str,
                    memory_share: float) -> None:
    """Compile ``name`` in ``precision`` for each size (until
    ``deadline``), report ready, then time the compiled model when told
    to."""
    device = torch.device(device_name)
    set_numerics(device)
    if device.type == 'cuda':
        # A share of the card each: CUDA-graph pools and cuDNN's autotuner
        # (which tries workspaces as large as memory allows) of 18 workers
        # filled an H200's 140 GiB at 800x1344 on 2026-12-04 without it.
        torch.cuda.set_per_process_memory_fraction(memory_share, device)
    dtype = PRECISIONS[precision]
    cells: Dict[str, dict] = {}
    try:
        model = build_model(name, device, dtype)
        # A mode is inductor's; another backend takes none.
        inductor = compile_backend == 'inductor'
        graphed = torch.compile(
            model, dynamic=False, backend=compile_backend,
            mode=compile_mode if inductor and compile_mode != 'default'
            else None)

        # The modes that replay CUDA graphs on a GPU.
        replays_graphs = device.type == 'cuda' and inductor and \
            compile_mode in ('reduce-overhead', 'max-autotune')

        def compiled(x):
            if replays_graphs:
                # Each call a new step: CUDA graph outputs of the last call
                # may be overwritten.
                cudagraph_mark_step_begin()
            return graphed(x)
    except Exception as failure:
        status = (f'not available: {failure}' if isinstance(
            failure, ModelUnavailable) else
                  f'failed: {_first_line(failure)}')
        cells = {size: dict(status=status) for size in sizes}
        model = compiled = None
    inputs = {}
    for size in sizes:
        if size in cells:
            continue
        if time.time() > deadline:
            cells[size] = dict(status='skipped: compile time budget')
            continue
        x = make_input(size, device, dtype)
        try:
            with torch.no_grad():
                begin = time.perf_counter()
                out = compiled(x)
                _sync(device)
                ready_s = time.perf_counter() - begin
                error = relative_error(out, model(x))
        except Exception as failure:
            cells[size] = dict(status=f'failed: {_first_line(failure)}')
            continue
        finally:
            if device.type == 'cuda':
                torch.cuda.empty_cache()
        inputs[size] = x
        cells[size] = dict(status='ok', ready_s=ready_s,
                           rel_err_vs_eager=error)
    conn.send(('ready', cells))
    while True:
        command, end_time = conn.recv()
        if command != 'time':
            break
        with torch.no_grad():
            for size, x in inputs.items():
                if time.time() > end_time:
                    cells[size]['status'] = 'skipped: time budget'
                    continue
                try:
                    for _ in range(warmup):
                        compiled(x)
                    _sync(device)
                    times = [
                        time_call(lambda: compiled(x), device)
                        for _ in range(reps)
                    ]
                except Exception as failure:
                    cells[size]['status'] = f'failed: {_first_line(failure)}'
                    continue
                cells[size].update(summary(times))
        conn.send(('timed', cells))
    conn.close()


class CompileWorkers:
    """The compile workers: at most ``max_active`` compiling at once; each
    one, once compiled, waits idle until :meth:`time_all`."""

    def __init__(self, specs: Sequence[Tuple[str, str]], sizes, device,
                 warmup: int, reps: int, deadline: float, max_active: int,
                 compile_mode: str, compile_backend: str):
        self.context = multiprocessing.get_context('spawn')
        self.pending = list(specs)
        self.compiling: Dict[Tuple[str, str], tuple] = {}
        self.ready: Dict[Tuple[str, str], tuple] = {}
        self.results: Dict[Tuple[str, str], dict] = {}
        # Each worker's share of the GPU's memory: all of them stay alive
        # until timed; the main process keeps one share too.
        memory_share = 0.95 / (len(specs) + 1)
        self.args = (list(sizes), str(device), warmup, reps, deadline,
                     compile_mode, compile_backend, memory_share)
        self.sizes = list(sizes)
        self.deadline = deadline
        self.max_active = max(1, max_active)

    def _start_more(self) -> None:
        while self.pending and len(self.compiling) < self.max_active:
            spec = self.pending.pop(0)
            if time.time() > self.deadline:
                self.results[spec] = {
                    size: dict(status='skipped: compile time budget')
                    for size in self.sizes
                }
                continue
            parent, child = self.context.Pipe()
            process = self.context.Process(
                target=_compile_worker,
                args=(child, *spec, *self.args),
                daemon=True)
            # One compile thread each: the workers themselves fill the
            # cores (a pool per worker would start cores x workers).
            previous = os.environ.get('TORCHINDUCTOR_COMPILE_THREADS')
            os.environ['TORCHINDUCTOR_COMPILE_THREADS'] = '1'
            try:
                process.start()
            finally:
                if previous is None:
                    del os.environ['TORCHINDUCTOR_COMPILE_THREADS']
                else:
                    os.environ['TORCHINDUCTOR_COMPILE_THREADS'] = previous
            child.close()
            self.compiling[spec] = (process, parent)

    def start(self) -> None:
        self._start_more()

    def wait_ready(self, grace_s: float, log: Callable) -> None:
        """Until every worker is compiled (starting the pending ones as
        others finish), or ``grace_s`` after the compile deadline."""
        while self.compiling or self.pending:
            self._start_more()
            for spec, (process, conn) in list(self.compiling.items()):
                ready = False
                try:
                    ready = conn.poll(0.05)
                    message = conn.recv() if ready else None
                except (EOFError, OSError):
                    message = None
                    ready = True
                if not ready:
                    if process.is_alive():
                        continue
                    message = None
                del self.compiling[spec]
                if message is None:
                    self.results[spec] = {
                        size: dict(status='failed: the compile worker '
                                   f'exited ({process.exitcode})')
                        for size in self.sizes
                    }
                    continue
                self.results[spec] = message[1]
                self.ready[spec] = (process, conn)
                log(f'compiled {spec[0]} {spec[1]}: ' + ', '.join(
                    f"{size} {cell.get('ready_s', 0):.0f} s"
                    if cell['status'] == 'ok' else f"{size} {cell['status']}"
                    for size, cell in message[1].items()))
            if time.time() > self.deadline + grace_s:
                for spec, (process, _) in self.compiling.items():
                    process.kill()
                    self.results[spec] = {
                        size: dict(status='skipped: still compiling at the '
                                   'time budget')
                        for size in self.sizes
                    }
                self.compiling.clear()
                for spec in self.pending:
                    self.results[spec] = {
                        size: dict(status='skipped: compile time budget')
                        for size in self.sizes
                    }
                self.pending.clear()

    def time_all(self, order: Sequence[Tuple[str, str]], end_time: float,
                 log: Callable) -> None:
        """Each compiled worker times its model alone, in ``order``."""
        for spec in order:
            if spec not in self.ready:
                continue
            process, conn = self.ready[spec]
            try:
                conn.send(('time', end_time))
                _, cells = conn.recv()
            except (EOFError, OSError):
                cells = {
                    size: dict(status='failed: the compile worker exited')
                    for size in self.sizes
                }
            self.results[spec] = cells
            log(f'compiled {spec[0]} {spec[1]} timed: ' + ', '.join(
                f"{size} {cell['median_ms']:.3f} ms" if 'median_ms' in cell
                else f"{size} {cell['status']}"
                for size, cell in cells.items()))

    def close(self) -> None:
        for process, conn in list(self.ready.values()):
            try:
                conn.send(('exit', 0.))
            except (OSError, BrokenPipeError):
                pass
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
        for process, _ in self.compiling.values():
            process.kill()

    def rows(self) -> List[dict]:
        rows = []
        for (name, precision), cells in self.results.items():
            for size, cell in cells.items():
                rows.append(
                    dict(model=name, mode='compile', precision=precision,
                         size=size, **cell))
        return rows


# --------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------
def _compile_setting(results: dict) -> str:
    """``mode=...`` for inductor, ``backend=...`` for another backend."""
    backend = results.get('compile_backend', DEFAULT_COMPILE_BACKEND)
    if backend != DEFAULT_COMPILE_BACKEND:
        return f'backend={backend}'
    return f"mode={results.get('compile_mode', 'default')}"


def environment(device: torch.device) -> dict:
    """The card, driver, torch, CUDA and what OpenMMLab packages are
    here."""
    info = dict(
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec='seconds'),
        python=platform.python_version(),
        torch=torch.__version__,
        cuda=torch.version.cuda,
        cudnn=(torch.backends.cudnn.version()
               if torch.backends.cudnn.is_available() else None),
        device=str(device),
        cpu=cpu_model(),
        cpu_count=os.cpu_count(),
    )
    if device.type == 'cuda':
        properties = torch.cuda.get_device_properties(device)
        info.update(
            gpu=properties.name,
            gpu_memory_gib=round(properties.total_memory / 2**30, 1),
            compute_capability=f'{properties.major}.{properties.minor}')
        try:
            info['nvidia_smi'] = subprocess.run(
                [
                    'nvidia-smi', '--query-gpu=name,driver_version,'
                    'clocks.max.sm,power.limit', '--format=csv,noheader'
                ],
                capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            info['nvidia_smi'] = None
    for package in ('mmengine', 'mmcv', 'torchvision', 'timm'):
        try:
            info[package] = __import__(package).__version__
        except Exception:
            info[package] = None
    # Whether this mmcv has its compiled ops (found, not imported).
    info['mmcv_compiled_ops'] = bool(
        info['mmcv'] and importlib.util.find_spec('mmcv._ext'))
    return info


def openmmlab_imports() -> Dict[str, bool]:
    """Which of the packages the backbone must not need were imported in
    this process."""
    return {
        name: name in sys.modules
        for name in ('mmcv.ops', 'mmcv._ext', 'mmdet', 'mmseg', 'mmdeploy')
    }


def run(models: Sequence[str],
        sizes: Sequence[str],
        precisions: Sequence[str],
        modes: Sequence[str],
        train_size: Optional[str],
        device: torch.device,
        reps: int = 30,
        warmup: int = 5,
        train_steps: int = 10,
        budget_s: float = 300.,
        compile_share: float = 0.45,
        compile_workers: Optional[int] = None,
        compile_mode: Optional[str] = None,
        compile_backend: str = DEFAULT_COMPILE_BACKEND,
        train_precisions: Sequence[str] = ('bf16', 'fp16'),
        log: Callable = print) -> dict:
    """Every measurement of the module docstring; returns the results
    (see :func:`write_reports`)."""
    start = time.time()
    end_time = start + budget_s
    set_numerics(device)
    if compile_mode is None:
        compile_mode = DEFAULT_COMPILE_MODE[device.type]
    order = _priority(models, precisions)
    workers = None
    if 'compile' in modes:
        workers = CompileWorkers(
            order, sizes, device, warmup, reps,
            deadline=start + compile_share * budget_s,
            max_active=compile_workers or os.cpu_count() or 1,
            compile_mode=compile_mode, compile_backend=compile_backend)
        workers.start()
    results = dict(environment=environment(device), budget_s=budget_s,
                   compile_mode=compile_mode, compile_backend=compile_backend)
    log('environment: ' + json.dumps(results['environment']))
    try:
        results['parity'] = timm_parity(device)
    except ModelUnavailable as error:
        results['parity'] = dict(status=f'not available: {error}')
    log('timm vs ours: ' + json.dumps(results['parity']))
    # Each model's fp32 inference form, built once: for the FLOPs and as
    # the eager models' fp32 reference.
    references, unavailable = {}, {}
    for name in models:
        try:
            references[name] = build_model(name, device)
        except ModelUnavailable as error:
            unavailable[name] = error
    flops = {
        f'{name} {size}': count_flops(model, size, device)
        for name, model in references.items() for size in sizes
    }
    results['gflops_per_image'] = {
        k: (v / 1e9 if v else None)
        for k, v in flops.items()
    }
    if workers is not None:
        workers.wait_ready(grace_s=0.15 * budget_s, log=log)
    rows = []
    if 'eager' in modes:
        rows += eager_latency(references, unavailable, sizes, precisions,
                              device, warmup, reps, end_time, log)
    references.clear()
    if workers is not None:
        workers.time_all(order, end_time, log)
        workers.close()
        rows += workers.rows()
    results['training'] = []
    if train_size:
        results['training'] = training_throughput(
            models, train_size, train_precisions, device, train_steps,
            max(1, warmup // 2), end_time, log)
    for row in rows:
        height, width, batch = parse_cell_size(row['size'])
        per_image = flops.get(f"{row['model']} {row['size']}")
        if per_image and 'median_ms' in row:
            row['tflops'] = per_image * batch / row['median_ms'] / 1e9
    results['latency'] = rows
    results['ratios'] = ratios(rows)
    results['openmmlab_imports'] = openmmlab_imports()
    results['elapsed_s'] = time.time() - start
    return results


def _priority(models: Sequence[str],
              precisions: Sequence[str]) -> List[Tuple[str, str]]:
    """(model, precision) pairs, the headline's first."""
    first = [HEADLINE['precision']] if HEADLINE['precision'] in precisions \
        else []
    precisions = first + [p for p in precisions if p not in first]
    heads = [m for m in (HEADLINE['model'], REFERENCE) if m in models]
    models = heads + [m for m in models if m not in heads]
    return [(m, p) for p in precisions for m in models]


def ratios(rows: Sequence[dict]) -> List[dict]:
    """Each model's median latency over ResNet-101's in the same mode,
    precision and size."""
    reference = {(r['mode'], r['precision'], r['size']): r['median_ms']
                 for r in rows
                 if r['model'] == REFERENCE and 'median_ms' in r}
    out = []
    for row in rows:
        key = (row['mode'], row['precision'], row['size'])
        if row['model'] != REFERENCE and 'median_ms' in row \
                and key in reference:
            out.append(
                dict(model=row['model'], mode=row['mode'],
                     precision=row['precision'], size=row['size'],
                     ratio=row['median_ms'] / reference[key]))
    return out


# --------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------
def _cell(row: Optional[dict]) -> str:
    if row is None:
        return '-'
    if 'median_ms' not in row:
        return row.get('status', '-').split(':')[0]
    return f"{row['median_ms']:.2f}"


def text_report(results: dict) -> str:
    rows = results['latency']
    env = results['environment']
    lines = [
        f"Next-ViT on {env.get('gpu', env['device'])} "
        f"({env.get('nvidia_smi') or 'no nvidia-smi'}), torch "
        f"{env['torch']}, CUDA {env['cuda']}, cuDNN {env['cudnn']}, "
        f"{env['date']}", ''
    ]
    parity = results.get('parity', {})
    if 'modules' in parity:
        lines.append(
            'timm nextvit_small with our Next-ViT-S weights, fp32, '
            f"{parity['input']}: relative error {parity['modules']:.1e} "
            f"(modules), {parity['deployed']:.1e} (both folded)")
    else:
        lines.append(f"timm parity: {parity.get('status')}")
    sizes = list(dict.fromkeys(r['size'] for r in rows))
    models = list(dict.fromkeys(r['model'] for r in rows))
    index = {(r['model'], r['mode'], r['precision'], r['size']): r
             for r in rows}
    ratio_index = {(r['model'], r['mode'], r['precision'], r['size']):
                   r['ratio'] for r in results['ratios']}
    for mode in MODES:
        for precision in PRECISIONS:
            if not any(k[1] == mode and k[2] == precision for k in index):
                continue
            label = mode if mode == 'eager' else \
                f'{mode} ({_compile_setting(results)})'
            lines += [
                '', f'Latency, {label}, {precision}: median ms (x ResNet-101)',
                '| model | ' + ' | '.join(sizes) + ' |',
                '|---|' + '---|' * len(sizes)
            ]
            for model in models:
                cells = []
                for size in sizes:
                    key = (model, mode, precision, size)
                    text = _cell(index.get(key))
                    if key in ratio_index:
                        text += f' ({ratio_index[key]:.2f})'
                    cells.append(text)
                lines.append(f'| {model} | ' + ' | '.join(cells) + ' |')
    head = HEADLINE
    key = (head['model'], head['mode'], head['precision'], head['size'])
    if key in ratio_index:
        flops = results['gflops_per_image']
        ours = flops.get(f"{head['model']} {head['size']}")
        theirs = flops.get(f"{REFERENCE} {head['size']}")
        flop_ratio = f', FLOP ratio {ours / theirs:.2f}' if ours and \
            theirs else ''
        lines += [
            '',
            f"Next-ViT-S / ResNet-101, {head['precision']}, {head['size']}, "
            f'compiled ({_compile_setting(results)}): '
            f"{ratio_index[key]:.2f} "
            f"({index[key]['median_ms']:.2f} / "
            f"{index[(REFERENCE, *key[1:])]['median_ms']:.2f} ms"
            f'{flop_ratio})'
        ]
    if results['training']:
        lines += [
            '', 'Training (forward + backward + AdamW step, autocast): '
            'images/s, peak MiB', '| model | precision | size | img/s | '
            'step ms | peak MiB |', '|---|---|---|---|---|---|'
        ]
        for row in results['training']:
            if 'images_per_s' in row:
                peak = row.get('peak_mib')
                lines.append(
                    f"| {row['model']} | {row['precision']} | {row['size']} "
                    f"| {row['images_per_s']:.1f} | {row['median_ms']:.1f} | "
                    f"{f'{peak:.0f}' if peak else '-'} |")
            else:
                lines.append(f"| {row['model']} | {row['precision']} | "
                             f"{row['size']} | {row['status']} | | |")
    missing = [r for r in rows if 'median_ms' not in r]
    if missing:
        lines += ['', 'Not measured:']
        lines += [
            f"- {r['model']} {r['mode']} {r['precision']} {r['size']}: "
            f"{r['status']}" for r in missing
        ]
    lines += [
        '', 'OpenMMLab modules imported by the run: ' + ', '.join(
            f'{k}={v}' for k, v in results['openmmlab_imports'].items()),
        f"elapsed {results['elapsed_s']:.0f} s of a "
        f"{results['budget_s']:.0f} s budget"
    ]
    return '\n'.join(lines) + '\n'


def plot(results: dict, path: str) -> bool:
    """Latency bars per size (models x precision and mode); False without
    matplotlib."""
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rows = [r for r in results['latency'] if 'median_ms' in r]
    sizes = list(dict.fromkeys(r['size'] for r in rows))
    if not sizes:
        return False
    models = list(dict.fromkeys(r['model'] for r in rows))
    series = [(m, p) for m in MODES for p in PRECISIONS
              if any(r['mode'] == m and r['precision'] == p for r in rows)]
    figure, axes = plt.subplots(
        1, len(sizes), figsize=(5 * len(sizes), 4), squeeze=False)
    width = 0.8 / max(1, len(series))
    for axis, size in zip(axes[0], sizes):
        for i, (mode, precision) in enumerate(series):
            values = []
            for model in models:
                match = [
                    r['median_ms'] for r in rows
                    if (r['model'], r['mode'], r['precision'],
                        r['size']) == (model, mode, precision, size)
                ]
                values.append(match[0] if match else 0.)
            axis.bar([j + i * width for j in range(len(models))], values,
                     width, label=f'{precision} {mode}')
        axis.set_xticks([j + 0.4 - width / 2 for j in range(len(models))])
        axis.set_xticklabels(models, rotation=45, ha='right', fontsize=8)
        axis.set_title(size)
        axis.set_ylabel('ms')
    axes[0][0].legend(fontsize=7)
    env = results['environment']
    figure.suptitle(f"{env.get('gpu', env['device'])}, torch {env['torch']}"
                    f", {env['date'][:10]}")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


def write_reports(results: dict, out_dir: str) -> List[str]:
    """``gpu_benchmark.json``, ``.txt`` and ``.png`` in ``out_dir``."""
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    path = osp.join(out_dir, 'gpu_benchmark.json')
    with open(path, 'w') as f:
        json.dump(results, f, indent=1)
    paths.append(path)
    path = osp.join(out_dir, 'gpu_benchmark.txt')
    with open(path, 'w') as f:
        f.write(text_report(results))
    paths.append(path)
    path = osp.join(out_dir, 'gpu_benchmark.png')
    if plot(results, path):
        paths.append(path)
    return paths
