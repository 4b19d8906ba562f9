# Copyright (c) mmnextvit contributors. All rights reserved.
"""How the latency benchmark (:mod:`.latency_benchmark`) times: the things
timed (:class:`Candidate`), warm-up and interleaved rounds
(:func:`run_rounds`), the dense kernels whose best rate is the machine's
practical ceiling (:func:`ceiling_candidates`, :func:`ceiling_rates`) and
the peak memory of one forward (:func:`peak_memory_mib`)."""
import statistics
import time
from typing import Callable, Dict, List, Optional, Tuple

from .memory import reset_peak_rss, status_kib

__all__ = [
    'Candidate', 'timed', 'run_rounds', 'quartiles', 'peak_memory_mib',
    'ceiling_candidates', 'ceiling_rates'
]


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
        # An exported whole model: what the profiling of its parts needs
        # (:func:`.whole_models.time_parts`), then its result.
        self.parts = None


def _sync(device: str) -> None:
    if device.startswith('cuda'):
        import torch
        torch.cuda.synchronize()


def timed(run: Callable, device: str) -> float:
    """Milliseconds of one call of ``run``, the device synchronised on
    both sides."""
    _sync(device)
    start = time.perf_counter()
    run()
    _sync(device)
    return (time.perf_counter() - start) * 1e3


def run_rounds(candidates: List[Candidate],
               reps: int,
               warmup: int,
               device: str,
               progress: bool = True) -> None:
    """``warmup`` untimed calls of each candidate, then ``reps`` rounds of
    one timed call each, in turns, so that a change of machine load hits
    every candidate alike; ``progress`` shows the round on one line that
    is wiped at the end."""
    for candidate in candidates:
        for _ in range(warmup):
            candidate.run()
    for rep in range(reps):
        for candidate in candidates:
            candidate.times.append(timed(candidate.run, device))
        if progress:
            print(f'\r  round {rep + 1}/{reps}', end='', flush=True)
    if progress:
        print('\r' + ' ' * 20 + '\r', end='')


def quartiles(values: List[float]) -> Tuple[float, float]:
    """The first and third quartiles; the extremes below four values."""
    if len(values) < 4:
        return min(values), max(values)
    q = statistics.quantiles(values, n=4)
    return q[0], q[2]


def peak_memory_mib(run: Callable) -> Optional[float]:
    """The growth of the resident set's peak during one call of ``run``
    (MiB), or None where ``/proc`` cannot tell."""
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


def ceiling_rates(kernels: List[Candidate]) -> Dict[str, float]:
    """GFLOP/s of each timed ceiling kernel, at its median time."""
    return {
        k.name: k.flops / (statistics.median(k.times) / 1e3) / 1e9
        for k in kernels if k.times
    }
