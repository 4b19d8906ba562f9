#!/usr/bin/env python
# Copyright (c) mmnextvit contributors. All rights reserved.
"""Next-ViT against torchvision's ResNet and timm's Next-ViT on one GPU:
latency (fp32 / fp16 / bf16, eager and compiled) and training throughput
(see :mod:`mmnextvit.analysis.gpu_benchmark` for the method). Usually run
through ``tools/analysis_tools/gpu_benchmark.sh``.

    python tools/analysis_tools/gpu_benchmark.py --out-dir work_dirs/gpu
    python tools/analysis_tools/gpu_benchmark.py --cpu-rehearsal \\
        --out-dir work_dirs/gpu_rehearsal   # the same steps, tiny, on the CPU
"""
import argparse
import sys

import torch

from mmnextvit.analysis import gpu_benchmark as bench
from mmnextvit.cli import fail


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Next-ViT against ResNet and timm Next-ViT on one GPU.')
    parser.add_argument('--out-dir', default='work_dirs/gpu_benchmark',
                        help='where the tables (txt, json, png) go')
    parser.add_argument('--models', nargs='+', default=list(bench.MODELS),
                        choices=bench.MODELS, metavar='NAME',
                        help=f'models (default: all of {bench.MODELS})')
    parser.add_argument('--sizes', nargs='+', metavar='HxWxBATCH',
                        help=f'inference sizes (default {bench.GPU_SIZES})')
    parser.add_argument('--precisions', nargs='+', choices=bench.PRECISIONS,
                        help='default: fp32 fp16 bf16')
    parser.add_argument('--modes', nargs='+', choices=bench.MODES,
                        default=list(bench.MODES))
    parser.add_argument('--train-size', metavar='HxWxBATCH',
                        help=f'training size (default {bench.GPU_TRAIN_SIZE}'
                        '); "none" skips training')
    parser.add_argument('--reps', type=int, help='timed calls per cell '
                        '(default 30)')
    parser.add_argument('--warmup', type=int,
                        help='untimed calls first (default 5)')
    parser.add_argument('--train-steps', type=int,
                        help='timed training steps (default 10)')
    parser.add_argument('--budget', type=float, default=300.,
                        help='seconds for the measurements; cells not started '
                        'by then are reported as skipped (default 300: '
                        'about 6 minutes with the start and the shutdown)')
    parser.add_argument('--compile-mode', choices=bench.COMPILE_MODES,
                        help='torch.compile mode, with inductor (default: '
                        'reduce-overhead on a GPU; --cpu-rehearsal compiles '
                        'with the aot_eager backend unless this is given)')
    parser.add_argument('--compile-share', type=float, default=0.45,
                        help='share of the budget after which no compilation '
                        'starts (default 0.45)')
    parser.add_argument('--train-precisions', nargs='+',
                        choices=('bf16', 'fp16'), default=['bf16', 'fp16'],
                        help='autocast dtypes of the training steps')
    parser.add_argument('--compile-workers', type=int,
                        help='compile processes at once (default: one per '
                        'CPU core)')
    parser.add_argument('--cpu-rehearsal', action='store_true',
                        help='run the same steps on the CPU at a tiny size '
                        '(a check of the script, not a benchmark)')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.cpu_rehearsal:
        device, preset = torch.device('cpu'), bench.CPU_REHEARSAL
    elif torch.cuda.is_available():
        device, preset = torch.device('cuda'), bench.GPU_PRESET
    else:
        fail('torch sees no GPU here; run it on a GPU machine, or add '
             '--cpu-rehearsal for a quick check of the steps on the CPU')
    sizes = args.sizes or preset['sizes']
    train_size = args.train_size or preset['train_size']
    train_size = None if train_size.lower() == 'none' else train_size
    try:
        for size in list(sizes) + ([train_size] if train_size else []):
            bench.parse_cell_size(size)
    except ValueError as error:
        fail(str(error))
    precisions = args.precisions or preset['precisions']
    results = bench.run(
        args.models, sizes, precisions, args.modes, train_size, device,
        reps=args.reps or preset['reps'],
        warmup=args.warmup if args.warmup is not None else preset['warmup'],
        train_steps=args.train_steps or preset['train_steps'],
        budget_s=args.budget, compile_workers=args.compile_workers,
        compile_mode=args.compile_mode, compile_share=args.compile_share,
        # An explicit --compile-mode asks for inductor, rehearsal or not.
        compile_backend=('inductor' if args.compile_mode else
                         preset.get('compile_backend', 'inductor')),
        train_precisions=[p for p in args.train_precisions
                          if p in precisions],
        log=lambda line: print(f'[gpu_benchmark] {line}', flush=True))
    paths = bench.write_reports(results, args.out_dir)
    print(bench.text_report(results))
    print('written: ' + ', '.join(paths))


if __name__ == '__main__':
    sys.exit(main())
