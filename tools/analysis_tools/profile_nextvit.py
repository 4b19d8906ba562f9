#!/usr/bin/env python
# Copyright (c) mmnextvit contributors. All rights reserved.
"""Where a Next-ViT forward spends its time, by part of the network and by
operator (``torch.profiler``, CPU).

    python tools/analysis_tools/profile_nextvit.py --sizes 800x1216 224x224
    python tools/analysis_tools/profile_nextvit.py --arch base --eager \\
        --sizes 512x512 --ops 15

Parts: the stem, the patch embeddings (pool + 1x1 projection at block
entries), the convolutional attention (MHCA: grouped 3x3 + 1x1 projection,
with its residual), the MLPs (two 1x1 convolutions, with the pre-norm and
residual), the NTB's self-attention (E-MHSA: token pooling, q/k/v/proj
linears, the attention itself: fused SDPA, or grouped oneDNN convolutions
around a softmax for long key sequences), and the NTB's glue (channel
projection, concatenation, token reshapes). The parts are marked by
wrapping the backbone's methods with ``record_function`` in this process
only; times are the median over ``--reps`` profiled forwards (profiling
adds a little overhead to every operator). Eval mode, ``torch.no_grad()``,
batch 1; by default after ``switch_to_deploy()`` (``--eager`` for the
model as built).
Operator names are ATen's (``mkldnn::_convolution_pointwise`` is the fused
convolution of the inference path, ``mkldnn::_convolution_pointwise_`` the
same with the residual sum written in place).
"""
import argparse
import functools
import statistics
import sys
from collections import defaultdict
from typing import Dict, List

from mmnextvit.cli import parse_image_size

PARTS = [
    # (class name, method, label)
    ('ConvNormReLU', 'forward_inference', 'stem'),
    ('PatchEmbed', 'forward_inference', 'patch embed / projection'),
    ('ConvAttention', 'forward_inference', 'MHCA (3x3 grouped + 1x1)'),
    ('ConvMlp', 'forward_inference', 'MLP (1x1 expand + 1x1 reduce)'),
    ('EfficientAttention', 'forward_inference', 'E-MHSA total'),
    ('EfficientAttention', 'attend_inference', '  of which attention'),
    ('EfficientAttention', 'reduce', '  of which token pooling'),
    ('NextTransformerBlock', 'forward_inference', 'NTB total'),
    ('NextConvBlock', 'forward_inference', 'NCB total'),
]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Time per part and per operator of a Next-ViT forward.')
    parser.add_argument(
        '--arch', default='small', choices=['small', 'base', 'large'])
    parser.add_argument(
        '--sizes', nargs='+', default=['800x1216', '512x512', '224x224'])
    parser.add_argument(
        '--eager', action='store_true', help='skip switch_to_deploy()')
    parser.add_argument('--reps', type=int, default=3)
    parser.add_argument('--threads', type=int, default=None)
    parser.add_argument(
        '--ops', type=int, default=10, help='operators listed (default 10)')
    args = parser.parse_args()
    try:
        args.sizes = [parse_image_size(size) for size in args.sizes]
    except ValueError as error:
        parser.error(str(error))
    return args


def mark_parts():
    """Wrap the methods of PARTS in record_function ranges."""
    import torch

    from mmnextvit.models.backbones import nextvit
    for class_name, method, label in PARTS:
        cls = getattr(nextvit, class_name, None)
        original = getattr(cls, method, None)
        if original is None:  # an older version of the backbone
            continue

        @functools.wraps(original)
        def wrapped(*args, __original=original, __label=label, **kwargs):
            with torch.profiler.record_function(__label):
                return __original(*args, **kwargs)

        setattr(cls, method, wrapped)


def profile_once(model, x) -> Dict[str, float]:
    """Self CPU time per operator and total CPU time per part, in ms."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        model(x)
    times: Dict[str, float] = {}
    labels = {label for _, _, label in PARTS}
    for event in prof.key_averages():
        if event.key in labels:
            times['part:' + event.key] = event.cpu_time_total / 1e3
        else:
            times['op:' + event.key] = event.self_cpu_time_total / 1e3
    return times


def main() -> None:
    args = parse_args()
    import torch

    from mmnextvit.models import NextViT
    if args.threads:
        torch.set_num_threads(args.threads)
    mark_parts()
    model = NextViT(arch=args.arch, init_cfg=None).eval()
    if not args.eager:
        model.switch_to_deploy()
    label = (f'Next-ViT-{args.arch[0].upper()} '
             f'{"eager" if args.eager else "deployed"}')
    for height, width in args.sizes:
        x = torch.randn(1, 3, height, width)
        runs: List[Dict[str, float]] = []
        with torch.no_grad():
            model(x)
            wall = []
            for _ in range(args.reps):
                runs.append(profile_once(model, x))
            import time
            for _ in range(args.reps):
                start = time.perf_counter()
                model(x)
                wall.append((time.perf_counter() - start) * 1e3)
        merged = defaultdict(list)
        for run in runs:
            for key, value in run.items():
                merged[key].append(value)
        median = {k: statistics.median(v) for k, v in merged.items()}
        total = sum(v for k, v in median.items() if k.startswith('op:'))
        print(f'\n{label}, {height}x{width}, batch 1, '
              f'{torch.get_num_threads()} threads: profiled forward '
              f'{total:.1f} ms (sum of operator self times), unprofiled '
              f'{statistics.median(wall):.1f} ms (median of {args.reps})')
        print(f'  {"part":<34}{"ms":>9}{"share":>8}')
        for _, _, part in PARTS:
            value = median.get('part:' + part)
            if value is not None:
                print(f'  {part:<34}{value:9.1f}{100 * value / total:7.1f}%')
        print(f'  {"operator (self time)":<34}{"ms":>9}{"share":>8}')
        ops = sorted(((v, k[3:]) for k, v in median.items()
                      if k.startswith('op:')),
                     reverse=True)
        for value, name in ops[:args.ops]:
            print(f'  {name[:34]:<34}{value:9.1f}{100 * value / total:7.1f}%')


if __name__ == '__main__':
    sys.exit(main())
