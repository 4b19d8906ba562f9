# Copyright (c) mmnextvit contributors. All rights reserved.
"""Evaluate a checkpoint with the config's test data and metric.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE]
        [--show] [--show-dir DIR] [--tta] [--precision {fp32,bf16,fp16}]
        [--cfg-options KEY=VALUE ...]
    tools/dist_test.sh CONFIG CHECKPOINT NUM_PROCESSES [ARGS ...]

The checkpoint is read without running code from it and compared with the
model the config builds before any work starts; the task package (mmdet or
mmseg) follows the config's ``default_scope``.

Precision. ``--precision bf16`` or ``fp16`` runs the test loop under
autocast (mmengine's ``TestLoop(fp16=True)``), the weights staying fp32: on
the CPU autocast runs in bf16 (the only reduced precision of CPU autocast),
on CUDA in fp16, or in bf16 where the GPU supports it. Default fp32.
"""
import argparse
import os

from mmengine.config import ConfigDict

import mmnextvit  # noqa: F401  (lets torch load mmengine checkpoints)
from mmnextvit.cli import (LAUNCHERS, ToolError, add_cfg_options,
                           autocast_dtype, build_model, build_runner,
                           check_checkpoint, check_data_files,
                           check_data_paths, finish_distributed, init_task,
                           load_config, log_backbone_dtype, run_tool,
                           set_work_dir, setup_launcher, stops_in_one_line)
from mmnextvit.data_checks.dataset_paths import loader_datasets


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Test (and evaluate) a Next-ViT detector or segmentor.')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--work-dir', help='folder for the log and the metrics (json)')
    parser.add_argument(
        '--out',
        help='detection: dump the predictions to this .pkl file; '
        'segmentation: write the predicted label maps to this folder')
    parser.add_argument(
        '--show', action='store_true', help='show each prediction')
    parser.add_argument(
        '--show-dir',
        help='save pictures of the predictions to this folder (relative to '
        'work_dir/<timestamp>/ for detection, to the visualizer\'s save '
        'dir for segmentation)')
    parser.add_argument(
        '--wait-time', type=float, default=2,
        help='seconds each picture is shown with --show')
    add_cfg_options(parser, 'test_dataloader.batch_size=2')
    parser.add_argument(
        '--launcher', choices=LAUNCHERS, default='none',
        help='how the processes were started (dist_test.sh: pytorch)')
    parser.add_argument(
        '--tta',
        action='store_true',
        help='test-time augmentation from the config\'s tta_model and '
        'tta_pipeline')
    parser.add_argument(
        '--precision',
        choices=PRECISIONS,
        default='fp32',
        help='fp32 (default), or autocast in bf16 (CPU, recent GPUs) or '
        'fp16 (GPU)')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


PRECISIONS = ('fp32', 'bf16', 'fp16')


def set_precision(cfg, precision: str) -> None:
    """Run the test loop under autocast in ``precision`` (fp32: no
    autocast). mmengine's loop takes the device's autocast dtype, which
    this sets for CUDA; a CPU autocasts to bf16 only."""
    import torch
    device_type = 'cuda' if torch.cuda.is_available() else 'cpu'
    dtype = autocast_dtype(precision, device_type)
    if dtype is None:
        return
    if device_type == 'cuda':
        torch.set_autocast_dtype('cuda', dtype)
    loop = cfg.get('test_cfg') or ConfigDict(type='TestLoop')
    if loop.get('type', 'TestLoop') not in ('TestLoop', 'mmengine.TestLoop'):
        raise ToolError(
            f"--precision {precision}: test_cfg.type={loop.get('type')!r} "
            f'may not support fp16=True; use mmengine\'s TestLoop')
    loop.fp16 = True
    cfg.test_cfg = loop


def fp32_predictions(runner) -> None:
    """Hand the metrics fp32 predictions: under autocast boxes and scores
    come out in bf16 / fp16, which mmdet's metrics turn into numpy arrays
    (numpy has no bf16)."""
    import torch
    evaluator = runner.test_loop.evaluator
    process = evaluator.process

    def to_fp32(item):
        if isinstance(item, torch.Tensor) and item.dtype in (torch.bfloat16,
                                                             torch.float16):
            return item.float()
        if hasattr(item, 'items'):  # data fields of a sample / InstanceData
            for key, value in list(item.items()):
                setattr(item, key, to_fp32(value))
        return item

    def process_fp32(data_samples, data_batch=None):
        return process([to_fp32(s) for s in data_samples], data_batch)

    evaluator.process = process_fp32


def enable_visualization(cfg, task: str, args: argparse.Namespace) -> None:
    """Turn on the config's visualization hook, as the mmdet and mmseg test
    tools do (they differ in where --show-dir goes)."""
    hook = cfg.get('default_hooks', {}).get('visualization')
    if hook is None:
        raise ToolError(
            f"--show/--show-dir: config '{args.config}' has no "
            f'default_hooks.visualization; add the task\'s visualization '
            f'hook (mmdet: DetVisualizationHook, mmseg: '
            f'SegVisualizationHook)')
    hook.draw = True
    if args.show:
        hook.show = True
        hook.wait_time = args.wait_time
    if args.show_dir:
        if task == 'mmdet':
            hook.test_out_dir = args.show_dir
        else:
            cfg.visualizer.save_dir = args.show_dir


def enable_tta(cfg, config_path: str, model):
    """Wrap ``model`` in the config's ``tta_model`` and test with its
    ``tta_pipeline``; returns the wrapped model."""
    missing = [k for k in ('tta_model', 'tta_pipeline') if k not in cfg]
    if missing:
        raise ToolError(
            f"--tta: config '{config_path}' has no {' or '.join(missing)}; "
            f'add them (see configs/upernet/nextvit_s_160k.py) or drop --tta')
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    for _, dataset in loader_datasets(cfg, 'test_dataloader'):
        dataset.pipeline = cfg.tta_pipeline
    from mmengine.registry import MODELS
    return MODELS.build(dict(cfg.tta_model, module=model))


@run_tool
def main(argv=None) -> None:
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    task = init_task(cfg)
    set_work_dir(cfg, args.work_dir, args.config)
    if args.out is not None and task == 'mmdet' and not args.out.endswith(
            ('.pkl', '.pickle')):
        raise ToolError(
            f"--out '{args.out}': detection predictions are dumped as a "
            f'pickle; give a file name ending in .pkl')

    set_precision(cfg, args.precision)
    check_data_paths(cfg, ['test_dataloader'])
    check_data_files(cfg, ['test_dataloader'])
    setup_launcher(cfg, args.launcher)
    # Built here, before the Runner writes its work dir, and run by it.
    model = build_model(cfg)
    check_checkpoint(cfg, args.checkpoint, model=model)
    cfg.load_from = args.checkpoint

    if args.show or args.show_dir:
        enable_visualization(cfg, task, args)
    if args.tta:
        model = enable_tta(cfg, args.config, model)
    log_backbone_dtype(model, args.precision)
    if args.out is not None and task == 'mmseg':
        cfg.test_evaluator.output_dir = args.out
        cfg.test_evaluator.keep_results = True

    runner = build_runner(cfg, model)
    if args.out is not None and task == 'mmdet':
        from mmdet.evaluation import DumpDetResults
        runner.test_evaluator.metrics.append(
            DumpDetResults(out_file_path=args.out))
    if args.precision != 'fp32':
        fp32_predictions(runner)
    with stops_in_one_line(runner):
        runner.test()
    finish_distributed()


if __name__ == '__main__':
    main()
