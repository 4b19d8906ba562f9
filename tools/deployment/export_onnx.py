#!/usr/bin/env python
# Copyright (c) mmnextvit contributors. All rights reserved.
"""Export a bare Next-ViT backbone to ONNX and check the file with ONNX
Runtime.

    # the backbone alone (four pyramid features), any height and width
    python tools/deployment/export_onnx.py nextvit-s nextvit_s.onnx \\
        --checkpoint nextvit_small_in1k_224.pth --shape 224 224 --dynamic

Whole detectors and segmentors are deployed with mmdeploy through
``tools/deployment/deploy.py`` (one way to deploy a whole model); a config
given here is refused with a line that says so.

What is exported. For a backbone name (``nextvit-s``, ``nextvit-b``,
``nextvit-l``, with ``--seg`` for the segmentation variant with its extra
norms) the graph maps an image batch to the four features. With
``--dynamic`` the batch, height and width are free; Next-ViT's own token
pooling follows the input size as it is.

The batch norms are folded into the neighbouring convolutions and linear
maps first (``switch_to_deploy``; ``--keep-norms`` exports them as
BatchNormalization nodes instead); they are never dropped. The export uses
the TorchScript-based exporter of ``torch.onnx`` at opset 17 by default.

Check. The file is run with ONNX Runtime (CPU) and compared with PyTorch at
the export size and, with ``--dynamic``, at a second size (``--check-shape``;
by default an odd size, which changes the number of tokens the attention
pools): the largest absolute difference relative to the largest PyTorch
value must stay under ``--tolerance`` (1e-4) for every output, else the tool
exits with status 1 (the file is kept for inspection). ``--bench N`` also
times both runtimes (median of N interleaved runs).
"""
import argparse
import os
import os.path as osp
import statistics
import sys
import time
from typing import Any, List, Sequence, Tuple

from mmnextvit.cli import fail

ARCHES = {
    'nextvit-s': 'small',
    'nextvit-b': 'base',
    'nextvit-l': 'large',
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Export a Next-ViT backbone to ONNX and compare ONNX '
        'Runtime with PyTorch (whole models: tools/deployment/deploy.py).')
    parser.add_argument(
        'model',
        help=f'a backbone: {", ".join(ARCHES)}')
    parser.add_argument('output', help='the .onnx file to write')
    parser.add_argument('--checkpoint', help='weights to load (optional)')
    parser.add_argument(
        '--seg',
        action='store_true',
        help='backbone in segmentation mode (extra norms)')
    parser.add_argument(
        '--shape',
        type=int,
        nargs=2,
        metavar=('H', 'W'),
        help='export input size (default: 224 224)')
    parser.add_argument(
        '--dynamic',
        action='store_true',
        help='dynamic batch, height and width')
    parser.add_argument(
        '--check-shape',
        type=int,
        nargs=2,
        metavar=('H', 'W'),
        help='second size checked with --dynamic (default: an odd size '
        'near 3/4 of the export size)')
    parser.add_argument(
        '--keep-norms',
        action='store_true',
        help='export batch norms as nodes instead of folding them')
    parser.add_argument('--opset', type=int, default=17)
    parser.add_argument('--tolerance', type=float, default=1e-4)
    parser.add_argument(
        '--bench',
        type=int,
        default=0,
        metavar='N',
        help='time ONNX Runtime and PyTorch, N runs each (default: 0)')
    parser.add_argument(
        '--threads',
        type=int,
        default=None,
        help='threads of both runtimes when benchmarking')
    return parser.parse_args(argv)


def build(args) -> Tuple[Any, Tuple[int, int], List[str]]:
    """The backbone to export, its default input size and output names."""
    import mmnextvit  # noqa: F401
    from mmnextvit.models import NextViT
    if args.model not in ARCHES:
        if osp.isfile(args.model):
            fail(f"'{args.model}' is a config: deploy whole detectors and "
                 'segmentors with tools/deployment/deploy.py CONFIG '
                 'CHECKPOINT --deploy-cfg configs/deploy/... --work-dir DIR')
        fail(f"'{args.model}' is not a backbone name; pass one of "
             f'{list(ARCHES)}')
    model = NextViT(
        arch=ARCHES[args.model], with_extra_norm=args.seg, init_cfg=None)
    if args.checkpoint:
        from mmnextvit.models.checkpoint_layouts import load_backbone_weights
        load_backbone_weights(model, args.checkpoint)
    return model.eval(), (224, 224), [f'stage{i + 1}' for i in range(4)]


def deploy(module) -> int:
    """Fold the norms of every sub-module that can; returns how many."""
    count = 0
    for sub in module.modules():
        if type(sub).__name__ == 'NextViT':
            sub.switch_to_deploy()
            count += 1
    return count


def as_list(outputs) -> List:
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


def relative_errors(torch_outs: Sequence, ort_outs: Sequence) -> List[float]:
    import numpy as np
    errors = []
    for ref, got in zip(torch_outs, ort_outs):
        ref = ref.detach().cpu().numpy()
        if ref.shape != got.shape:
            return [float('inf')]
        scale = max(float(np.abs(ref).max()), 1e-12)
        errors.append(float(np.abs(ref - got).max()) / scale)
    return errors


def median_ms(run, count: int) -> float:
    times = []
    for _ in range(count):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main(argv=None) -> int:
    args = parse_args(argv)
    out_dir = osp.dirname(osp.abspath(args.output))
    if not osp.isdir(out_dir):
        fail(f"folder '{out_dir}' of the output does not exist; create it "
             'first')
    if args.checkpoint and not osp.isfile(args.checkpoint):
        fail(f"checkpoint '{args.checkpoint}' does not exist")
    try:
        import onnxruntime as ort
    except ImportError:
        fail('onnxruntime is not installed; pip install onnx onnxruntime '
             '(requirements/optional.txt)')
    import torch

    from mmnextvit.compat.torch import onnx_export
    if args.threads:
        torch.set_num_threads(args.threads)

    module, default_size, output_names = build(args)
    if not args.keep_norms:
        deploy(module)
    height, width = args.shape or default_size
    x = torch.randn(1, 3, height, width)
    with torch.no_grad():
        reference = as_list(module(x))
    if output_names is None or len(output_names) != len(reference):
        output_names = [f'output{i}' for i in range(len(reference))]
    dynamic_axes = None
    if args.dynamic:
        dynamic_axes = {'input': {0: 'batch', 2: 'height', 3: 'width'}}
        for name in output_names:
            dynamic_axes[name] = {0: 'batch', 2: 'out_height', 3: 'out_width'}

    partial = args.output + '.partial'
    try:
        import warnings
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter('ignore')
            onnx_export(
                module, (x, ),
                partial,
                opset_version=args.opset,
                input_names=['input'],
                output_names=output_names,
                dynamic_axes=dynamic_axes,
                do_constant_folding=True)
    except Exception as error:
        if osp.exists(partial):
            os.remove(partial)
        fail(f'export failed: {type(error).__name__}: '
             f'{str(error).splitlines()[0][:200]}')
    os.replace(partial, args.output)
    size_mb = osp.getsize(args.output) / 2**20
    print(f'wrote {args.output} ({size_mb:.1f} MiB, opset {args.opset}, '
          f'{"dynamic" if args.dynamic else "static"} input, norms '
          f'{"kept" if args.keep_norms else "folded"})')

    options = ort.SessionOptions()
    if args.threads:
        options.intra_op_num_threads = args.threads
    # ONNX Runtime's worker threads spin after each run by default, taking
    # the cores from the PyTorch forward timed right after it; sleeping
    # workers make the interleaved timing fair to both.
    options.add_session_config_entry('session.intra_op.allow_spinning', '0')
    session = ort.InferenceSession(
        args.output, options, providers=['CPUExecutionProvider'])

    shapes = [(height, width)]
    if args.dynamic:
        shapes.append(
            tuple(args.check_shape) if args.check_shape else
            (height * 3 // 4 + 1, width * 3 // 4 + 3))
    ok = True
    for shape in shapes:
        sample = torch.randn(1, 3, *shape)
        with torch.no_grad():
            expected = as_list(module(sample))
        got = session.run(None, {'input': sample.numpy()})
        errors = relative_errors(expected, got)
        worst = max(errors)
        passed = worst <= args.tolerance
        ok &= passed
        print(f'check {shape[0]}x{shape[1]}: max relative difference '
              f'{worst:.2e} over {len(errors)} output(s) '
              f'({"ok" if passed else "FAILED"}, tolerance '
              f'{args.tolerance:g})')

    if args.bench > 0:
        feed = {'input': x.numpy()}
        session.run(None, feed)
        with torch.no_grad():
            module(x)
            torch_times, ort_times = [], []
            for _ in range(args.bench):
                torch_times.append(median_ms(lambda: module(x), 1))
                ort_times.append(median_ms(lambda: session.run(None, feed),
                                           1))
        print(f'latency {height}x{width}, batch 1, interleaved, median of '
              f'{args.bench}: PyTorch {statistics.median(torch_times):.1f} '
              f'ms, ONNX Runtime {statistics.median(ort_times):.1f} ms '
              f'({torch.get_num_threads()} torch threads)')
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
