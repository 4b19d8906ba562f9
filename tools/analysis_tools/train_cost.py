#!/usr/bin/env python
# Copyright (c) mmnextvit contributors. All rights reserved.
"""Training cost on this machine: time and memory of one Mask R-CNN training
iteration per config, and what gradient checkpointing (``with_cp``) saves in
the Next-ViT backbone.

    # Mask R-CNN Next-ViT-S against ResNet-50, one 800x1216 image
    python tools/analysis_tools/train_cost.py iteration \\
        configs/mask_rcnn/nextvit_s_1x.py \\
        mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py --size 800x1216
    # backbone activation memory and gradients, with_cp off and on
    python tools/analysis_tools/train_cost.py checkpointing --size 800x1216

``iteration``: every config is built without pretrained weights (the
backbone's ``init_cfg`` is dropped) in training mode, with the config's own
backbone settings (frozen stages, norm_eval, drop path) and the fp32 AdamW
of the recipe. One synthetic image of ``--size`` with ``--objects`` boxes
and masks makes the batch. One iteration = ``model.loss`` + backward +
optimizer step; the configs are timed in turns (``--reps`` rounds after one
warm-up iteration each) and the median is reported. Peak memory is the
growth of the resident set (``VmHWM``, reset through
``/proc/self/clear_refs``) over one iteration, measured after the timings
with glibc returning freed blocks at once.

``checkpointing``: the detection backbone (Next-ViT-S, ``frozen_stages=1``,
``norm_eval=True`` as in the Mask R-CNN recipe, drop path off so both runs
compute the same function) in training mode, with and without ``with_cp``,
same weights and input. Reported per run: the memory the forward leaves
held for the backward (resident-set growth from before the forward to after
it, the input and weights excluded; with glibc returning freed blocks at
once), the peak over forward + backward, the time, and the largest
gradient difference between the two runs.
"""
import argparse
import os.path as osp
import statistics
import time
from typing import Tuple

from mmnextvit.analysis.memory import (reset_peak_rss,
                                       return_freed_memory_at_once, status_kib)
from mmnextvit.cli import fail, parse_image_size
from mmnextvit.config_resolver import resolve_any


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Training iteration cost and with_cp savings.')
    sub = parser.add_subparsers(dest='command', required=True)
    iteration = sub.add_parser('iteration', help='Mask R-CNN iterations')
    iteration.add_argument('configs', nargs='+')
    iteration.add_argument('--size', default='800x1216')
    iteration.add_argument('--objects', type=int, default=5)
    iteration.add_argument('--reps', type=int, default=3)
    iteration.add_argument('--threads', type=int, default=None)
    iteration.add_argument('--no-memory', action='store_true')
    iteration.add_argument(
        '--device', default='cpu', help='cpu or cuda (default: cpu)')
    checkpointing = sub.add_parser(
        'checkpointing', help='backbone memory with and without with_cp')
    checkpointing.add_argument(
        '--arch', default='small', choices=['small', 'base', 'large'])
    checkpointing.add_argument('--size', default='800x1216')
    checkpointing.add_argument('--batch', type=int, default=1)
    checkpointing.add_argument('--threads', type=int, default=None)
    return parser.parse_args()


def parse_size(text: str) -> Tuple[int, int]:
    try:
        return parse_image_size(text)
    except ValueError as error:
        fail(str(error))


# ---------------------------------------------------------------------------
# Memory: resident set of this process (Linux)
# ---------------------------------------------------------------------------
def mib(kib: int) -> float:
    return kib / 1024


# ---------------------------------------------------------------------------
# iteration
# ---------------------------------------------------------------------------
def build_detector(path: str):
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope

    import mmnextvit  # noqa: F401
    if not osp.isfile(resolve_any(path)):
        fail(f"config file '{path}' does not exist")
    cfg = Config.fromfile(resolve_any(path))
    if cfg.get('default_scope') != 'mmdet':
        fail(f"config '{path}' is not an mmdet config")
    init_default_scope('mmdet')
    cfg.model.backbone.init_cfg = None
    # PyTorch's default initialisation: init_weights() would only log.
    model = MODELS.build(cfg.model)
    model.train()
    return model


def synthetic_batch(height: int, width: int, objects: int, device: str):
    import torch
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData
    gen = torch.Generator().manual_seed(0)
    sample = DetDataSample(
        metainfo=dict(
            img_shape=(height, width),
            ori_shape=(height, width),
            pad_shape=(height, width),
            batch_input_shape=(height, width),
            scale_factor=(1., 1.)))
    corners = torch.rand(objects, 2, generator=gen) * torch.tensor(
        [width * 0.7, height * 0.7])
    sizes = (torch.rand(objects, 2, generator=gen) * 0.2 + 0.05) * \
        torch.tensor([width, height])
    boxes = torch.cat([corners, corners + sizes], dim=1)
    masks = torch.zeros(objects, height, width, dtype=torch.uint8)
    for i, (x0, y0, x1, y1) in enumerate(boxes.round().long().tolist()):
        masks[i, y0:y1, x0:x1] = 1
    instances = InstanceData()
    instances.bboxes = boxes
    instances.labels = torch.randint(0, 80, (objects, ), generator=gen)
    instances.masks = BitmapMasks(masks.numpy(), height, width)
    sample.gt_instances = instances
    inputs = torch.randn(1, 3, height, width, generator=gen)
    return inputs.to(device), [sample.to(device)]


def run_iterations(args) -> None:
    import torch
    height, width = parse_size(args.size)
    cuda = args.device.startswith('cuda')
    if cuda and not torch.cuda.is_available():
        fail('--device cuda asked for, but torch sees no GPU')
    runs = []
    for path in args.configs:
        print(f'building {path}')
        model = build_detector(path).to(args.device)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.05)
        inputs, samples = synthetic_batch(height, width, args.objects,
                                          args.device)

        def step(model=model, optimizer=optimizer, inputs=inputs,
                 samples=samples):
            losses = model.loss(inputs, samples)
            loss = sum(v for k, v in losses.items() if 'loss' in k
                       for v in (v if isinstance(v, list) else [v]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        runs.append(dict(name=path, step=step, times=[]))
    for run in runs:
        run['step']()  # warm-up
    for rep in range(args.reps):
        for run in runs:
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            run['step']()
            if cuda:
                torch.cuda.synchronize()
            run['times'].append(time.perf_counter() - start)
        print(f'  round {rep + 1}/{args.reps}', flush=True)
    memory = not args.no_memory and (cuda or return_freed_memory_at_once())
    for run in runs:
        run['peak'] = None
        if memory and cuda:
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
            run['step']()
            run['peak'] = (torch.cuda.max_memory_allocated() - before) / 2**20
        elif memory:
            before = reset_peak_rss()
            run['step']()
            run['peak'] = mib(status_kib('VmHWM') - before)
    where = (torch.cuda.get_device_name() if cuda else
             f'CPU, {torch.get_num_threads()} threads')
    print(f'\none training iteration (loss + backward + AdamW step), batch '
          f'1, {height}x{width}, {args.objects} objects, fp32, {where}, '
          f'median of {args.reps}; peak = '
          f'{"allocator peak growth" if cuda else "RSS growth"}')
    base = statistics.median(runs[-1]['times'])
    for run in runs:
        med = statistics.median(run['times'])
        peak = '-' if run['peak'] is None else f'{run["peak"]:.0f} MiB'
        print(f'  {run["name"]:<55} {med:7.3f} s ({1 / med:6.2f} img/s)  '
              f'x{med / base:4.2f} of the last  peak {peak}')


# ---------------------------------------------------------------------------
# checkpointing
# ---------------------------------------------------------------------------
def run_checkpointing(args) -> None:
    import torch

    from mmnextvit.models import NextViT
    height, width = parse_size(args.size)
    settings = dict(
        arch=args.arch,
        frozen_stages=1,
        norm_eval=True,
        drop_path_rate=0.,
        init_cfg=None)
    torch.manual_seed(0)
    plain = NextViT(**settings)
    checkpointed = NextViT(with_cp=True, **settings)
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.randn(args.batch, 3, height, width,
                    generator=torch.Generator().manual_seed(1))
    if not return_freed_memory_at_once():
        fail('needs Linux /proc to measure memory')
    results = {}
    for name, model in (('with_cp=False', plain),
                        ('with_cp=True', checkpointed)):
        model.train()
        for _ in range(2):  # the second run is measured
            model.zero_grad(set_to_none=True)
            before = reset_peak_rss()
            start = time.perf_counter()
            outs = model(x)
            held = mib(status_kib('VmRSS') - before)
            loss = sum((o.float() ** 2).mean() for o in outs)
            loss.backward()
            seconds = time.perf_counter() - start
            peak = mib(status_kib('VmHWM') - before)
            del outs, loss
        grads = {
            k: p.grad.clone()
            for k, p in model.named_parameters() if p.grad is not None
        }
        results[name] = dict(held=held, peak=peak, seconds=seconds,
                             grads=grads)
    a, b = results['with_cp=False'], results['with_cp=True']
    worst = 0.
    identical = set(a['grads']) == set(b['grads'])
    for key, grad in a['grads'].items():
        other = b['grads'][key]
        identical &= torch.equal(grad, other)
        scale = grad.abs().max().clamp_min(1e-30)
        worst = max(worst, ((grad - other).abs().max() / scale).item())
    print(f'\nNext-ViT-{args.arch[0].upper()} backbone, training mode '
          f'(frozen_stages=1, norm_eval=True, drop path 0), batch '
          f'{args.batch}, {height}x{width}, fp32, '
          f'{torch.get_num_threads()} threads')
    for name, r in results.items():
        print(f'  {name:<14} held for backward {r["held"]:8.0f} MiB  peak '
              f'fwd+bwd {r["peak"]:8.0f} MiB  time {r["seconds"]:6.2f} s')
    print(f'  with_cp cuts the memory held for backward by '
          f'{100 * (1 - b["held"] / a["held"]):.0f}% and the peak by '
          f'{100 * (1 - b["peak"] / a["peak"]):.0f}%; gradients of '
          f'{len(a["grads"])} parameters '
          f'{"bit-identical" if identical else "differ"} (largest relative '
          f'difference {worst:.1e})')


def main() -> None:
    args = parse_args()
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.command == 'iteration':
        run_iterations(args)
    else:
        run_checkpointing(args)


if __name__ == '__main__':
    main()
