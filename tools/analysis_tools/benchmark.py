#!/usr/bin/env python
# Copyright (c) mmnextvit contributors. All rights reserved.
"""Inference latency of Next-ViT against CNN and ViT backbones on this
machine, and of whole detection / segmentation models (the engines,
precisions and method: :mod:`mmnextvit.analysis.latency_benchmark`).

    python tools/analysis_tools/benchmark.py                      # full table
    python tools/analysis_tools/benchmark.py --models nextvit-s-deploy \\
        resnet101 --sizes 224x224 --reps 5 --warmup 1              # quick
    python tools/analysis_tools/benchmark.py --models none --sizes 800x1216 \\
        --config configs/mask_rcnn/nextvit_s_1x.py \\
        mmdet::mask_rcnn/mask-rcnn_r101_fpn_1x_coco.py
    python tools/analysis_tools/benchmark.py --json out.json --png out.png
    python tools/analysis_tools/benchmark.py --models nextvit-s-deploy \\
        resnet101 --engine openvino --precision bf16      # other engines
    python tools/analysis_tools/benchmark.py --models nextvit-s-deploy \\
        resnet101 --engine openvino --precision int8      # quantized

OpenVINO is optional: ``pip install openvino`` (requirements/optional.txt).
"""
import argparse
import json

from mmnextvit.analysis import engine_setup, latency_report
from mmnextvit.analysis.latency_benchmark import (DEFAULT_SIZES, MODEL_NAMES,
                                                  Settings, run)
from mmnextvit.cli import ToolError, run_tool


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
        choices=engine_setup.ENGINES,
        default='eager',
        help='what runs the backbones, all alike (default: eager)')
    parser.add_argument(
        '--precision',
        choices=engine_setup.PRECISIONS,
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


@run_tool
def main() -> None:
    args = parse_args()
    if args.fp16 and args.precision not in (None, 'fp16'):
        raise ToolError(f'--fp16 contradicts --precision {args.precision}; '
                        'give one')
    settings = Settings(
        models=[m for m in args.models if m != 'none'],
        sizes=args.sizes + args.extra_sizes,
        configs=args.config,
        reference_config=args.reference_config,
        reps=args.reps,
        warmup=args.warmup,
        threads=args.threads,
        batch=args.batch,
        device=args.device,
        engine=args.engine,
        precision=args.precision or ('fp16' if args.fp16 else 'fp32'),
        calib_images=args.calib_images,
        matmul_size=args.matmul_size,
        flops=not args.no_flops,
        memory=not args.no_memory,
        keep_memory=args.keep_memory,
        free_work=args.free_work,
        engine_only=args.engine_only)
    results, info, reference_config = run(settings)
    print(latency_report.report(results, info, reference_config))
    if args.json:
        with open(args.json, 'w') as out:
            json.dump(dict(machine=info, results=results), out, indent=1)
        print(f'wrote {args.json}')
    if args.png:
        latency_report.draw(results, args.png)
        print(f'wrote {args.png}')


if __name__ == '__main__':
    main()
