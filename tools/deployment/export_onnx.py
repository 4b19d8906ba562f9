#!/usr/bin/env python
# Copyright (c) mmnextvit contributors. All rights reserved.
"""Export a Next-ViT backbone, or a segmentor built from a config, to ONNX
and check the file with ONNX Runtime.

    # the backbone alone (four pyramid features), any height and width
    python tools/deployment/export_onnx.py nextvit-s nextvit_s.onnx \\
        --checkpoint nextvit_small_in1k_224.pth --shape 224 224 --dynamic
    # a Semantic FPN or UperNet segmentor (mmseg EncoderDecoder): the logits
    python tools/deployment/export_onnx.py configs/upernet/nextvit_s_160k.py \\
        upernet_s.onnx --checkpoint work_dirs/.../iter_160000.pth \\
        --shape 512 512 --dynamic --bench 10

What is exported. For a backbone name (``nextvit-s``, ``nextvit-b``,
``nextvit-l``, with ``--seg`` for the segmentation variant with its extra
norms) the graph maps an image batch to the four features. For a config
whose model is an mmseg ``EncoderDecoder`` the graph is its ``_forward``:
the decode head's logits at a quarter of the input size, before any
resizing. For any other config (e.g. Mask R-CNN) its backbone is exported.

Sizes. With ``--dynamic`` the batch, height and width are free. Two
size-dependent steps of the heads are exported in a size-independent form
(see :func:`traceable_resizing`): mmseg's scale-factor upsampling and
UperNet's pyramid pooling (adaptive average pooling, which ONNX lacks, as two
averaging matrix products built from the input size). Next-ViT's own token
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
import contextlib
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
        description='Export a Next-ViT backbone or segmentor to ONNX and '
        'compare ONNX Runtime with PyTorch.')
    parser.add_argument(
        'model',
        help=f'a backbone ({", ".join(ARCHES)}) or a config file')
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
        help='export input size (default: 224 224 for a backbone, the '
        "config's crop size or 512 512 for a segmentor)")
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
    """The module to export, its default input size and output names."""
    import torch

    import mmnextvit  # noqa: F401
    from mmnextvit.models import NextViT
    if args.model in ARCHES:
        model = NextViT(
            arch=ARCHES[args.model], with_extra_norm=args.seg, init_cfg=None)
        if args.checkpoint:
            from mmnextvit.models.checkpoint_layouts import \
                load_backbone_weights
            load_backbone_weights(model, args.checkpoint)
        return model.eval(), (224, 224), [f'stage{i + 1}' for i in range(4)]

    if not osp.isfile(args.model):
        fail(f"'{args.model}' is neither a backbone name ({list(ARCHES)}) "
             'nor a config file')
    from mmengine.config import Config
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import MODELS, init_default_scope
    from mmengine.runner import load_checkpoint
    try:
        cfg = Config.fromfile(args.model)
    except Exception as error:
        fail(f"cannot read config '{args.model}': "
             f'{str(error).splitlines()[0]}')
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    cfg.model.backbone.init_cfg = None  # weights come from --checkpoint
    if 'pretrained' in cfg.model:
        cfg.model.pretrained = None
    model = revert_sync_batchnorm(MODELS.build(cfg.model))
    if args.checkpoint:
        load_checkpoint(model, args.checkpoint, map_location='cpu')
    model.eval()
    if type(model).__name__ == 'EncoderDecoder' or hasattr(
            model, 'decode_head') and hasattr(model, 'extract_feat'):
        size = tuple(
            cfg.model.get('data_preprocessor', {}).get('size') or (512, 512))

        class Logits(torch.nn.Module):

            def __init__(self, segmentor):
                super().__init__()
                self.segmentor = segmentor

            def forward(self, inputs):
                return self.segmentor._forward(inputs)

        return Logits(model).eval(), size, ['logits']
    backbone = model.backbone
    names = [f'stage{i + 1}' for i in range(len(backbone.out_indices))] \
        if hasattr(backbone, 'out_indices') else None
    return backbone.eval(), (224, 224), names


def _pooling_matrix(length, cells: int, like):
    """(cells, length) matrix whose rows average the windows of adaptive
    average pooling: row i covers [floor(i * L / c), ceil((i + 1) * L / c))."""
    import torch
    index = torch.arange(cells, device=like.device)
    start = torch.div(index * length, cells, rounding_mode='floor')
    end = torch.div((index + 1) * length + cells - 1, cells,
                    rounding_mode='floor')
    position = torch.arange(length, device=like.device)
    inside = ((position[None] >= start[:, None])
              & (position[None] < end[:, None]))
    return inside.to(like.dtype) / (end - start)[:, None].to(like.dtype)


def _adaptive_avg_pool(self, x):
    """``AdaptiveAvgPool2d`` as two matrix products, built from the input's
    traced size: ONNX has no adaptive pooling, and the exporter's own
    rendering bakes the export size's window in (or refuses when the grid
    does not divide the input)."""
    size = self.output_size
    rows, cols = size if isinstance(size, (tuple, list)) else (size, size)
    rows = x.shape[-2] if rows is None else rows
    cols = x.shape[-1] if cols is None else cols
    pool_rows = _pooling_matrix(x.shape[-2], rows, x)
    pool_cols = _pooling_matrix(x.shape[-1], cols, x)
    return pool_rows @ x @ pool_cols.transpose(0, 1)


@contextlib.contextmanager
def traceable_resizing():
    """While exporting, compute two size-dependent steps from the traced
    input size rather than Python ints (which tracing records as constants
    of the export size): mmseg's ``Upsample`` gets ``F.interpolate`` with the
    scale factor itself (the same output size, ``floor(shape * factor)``),
    and adaptive average pooling (UperNet's pyramid pooling) becomes
    :func:`_adaptive_avg_pool`."""
    import torch
    import torch.nn.functional as F
    pool_forward = torch.nn.AdaptiveAvgPool2d.forward
    torch.nn.AdaptiveAvgPool2d.forward = _adaptive_avg_pool
    try:
        from mmseg.models.utils import wrappers
    except ImportError:
        try:
            yield
        finally:
            torch.nn.AdaptiveAvgPool2d.forward = pool_forward
        return
    original = wrappers.Upsample.forward

    def forward(self, x):
        if self.size:
            return original(self, x)
        return F.interpolate(
            x,
            scale_factor=self.scale_factor,
            mode=self.mode,
            align_corners=self.align_corners)

    wrappers.Upsample.forward = forward
    try:
        yield
    finally:
        wrappers.Upsample.forward = original
        torch.nn.AdaptiveAvgPool2d.forward = pool_forward


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
        with warnings.catch_warnings(), torch.no_grad(), \
                traceable_resizing():
            warnings.simplefilter('ignore')
            torch.onnx.export(
                module, (x, ),
                partial,
                dynamo=False,
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
