# Copyright (c) mmnextvit contributors. All rights reserved.
"""Train a detector or a segmentor from one of the configs.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--auto-scale-lr] [--cfg-options KEY=VALUE ...]
    tools/dist_train.sh CONFIG NUM_PROCESSES [ARGS ...]

The task package (mmdet or mmseg) follows the config's ``default_scope``.
Every path the run needs is checked before anything is built or written;
a bad one ends the tool with one line naming it and the fix.
"""
import argparse
import logging
import os

from mmengine.logging import print_log

import mmnextvit  # noqa: F401  (lets torch load mmengine checkpoints)
from mmnextvit.cli import (LAUNCHERS, ToolError, adapt_to_cpu, add_cfg_options,
                           build_model, build_runner, check_checkpoint,
                           check_data_files, check_data_paths, check_fits,
                           check_pretrained, finish_distributed, init_task,
                           load_config, run_tool, set_work_dir, setup_launcher,
                           stops_in_one_line)
from mmnextvit.cli.resume import find_resume_checkpoint


def keep_seed(cfg, checkpoint) -> None:
    """Resume with the seed of the run that wrote ``checkpoint`` when the
    config fixes none: mmengine builds the sampler and the loader workers
    with a fresh seed before it reads the checkpoint's, so the data order
    after the resume would differ from the interrupted run's."""
    seed = (checkpoint.get('meta') or {}).get('seed')
    randomness = dict(cfg.get('randomness') or {})
    if seed is None or randomness.get('seed') is not None:
        return
    randomness['seed'] = seed
    cfg.randomness = randomness
    print_log(f'--resume: seed {seed} of the checkpoint', logger='current')


def add_tensorboard(cfg) -> None:
    """Add MMEngine's TensorboardVisBackend to the visualizer, beside the
    backends the config has (its scalars.json stays)."""
    try:
        import tensorboard  # noqa: F401  (SummaryWriter needs it)
    except ImportError:
        raise ToolError('--tensorboard needs the tensorboard package; '
                        '`pip install tensorboard` or drop the flag') from None
    visualizer = cfg.get('visualizer')
    if not isinstance(visualizer, dict):
        raise ToolError(f"--tensorboard: config '{cfg.filename}' has no "
                        'visualizer dict to add the backend to')
    backends = list(visualizer.get('vis_backends') or [])
    if not any(
            str(b.get('type', '')).split('.')[-1] == 'TensorboardVisBackend'
            for b in backends):
        backends.append(dict(type='TensorboardVisBackend'))
    visualizer.vis_backends = backends


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Train a Next-ViT detector or segmentor.')
    parser.add_argument('config', help='config file')
    parser.add_argument(
        '--work-dir',
        help='folder for logs and checkpoints (default: the config\'s '
        'work_dir, else work_dirs/<config name>)')
    parser.add_argument(
        '--resume',
        nargs='?',
        const='auto',
        metavar='CKPT',
        help='resume from CKPT, or without a path from the latest '
        'checkpoint in the work dir')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='mixed-precision training (needs a CUDA GPU)')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the learning rate by the total batch size over the '
        'config\'s auto_scale_lr.base_batch_size')
    parser.add_argument(
        '--tensorboard',
        action='store_true',
        help='also log to TensorBoard (event files in the run\'s vis_data/; '
        'needs `pip install tensorboard`)')
    add_cfg_options(
        parser, 'train_cfg.max_epochs=1 '
        'model.backbone.init_cfg.checkpoint=PATH; lists as key="[a,b]"')
    parser.add_argument(
        '--launcher', choices=LAUNCHERS, default='none',
        help='how the processes were started (dist_train.sh: pytorch)')
    # torch.distributed.launch passes --local-rank (older: --local_rank).
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


@run_tool
def main(argv=None) -> None:
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    init_task(cfg)
    set_work_dir(cfg, args.work_dir, args.config)

    if args.amp:
        import torch
        if not torch.cuda.is_available():
            raise ToolError(
                '--amp needs a CUDA GPU (mmengine\'s AmpOptimWrapper refuses '
                'the CPU); drop --amp to train in fp32')
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.auto_scale_lr:
        scale = cfg.get('auto_scale_lr')
        if not (isinstance(scale, dict) and 'base_batch_size' in scale):
            raise ToolError(
                f"--auto-scale-lr: config '{args.config}' has no "
                f'auto_scale_lr.base_batch_size; add auto_scale_lr = '
                f'dict(enable=False, base_batch_size=<batch of its lr>)')
        cfg.auto_scale_lr.enable = True

    if args.tensorboard:
        add_tensorboard(cfg)

    loaders = ['train_dataloader']
    if cfg.get('val_cfg') and cfg.get('val_dataloader'):
        loaders.append('val_dataloader')
    check_data_paths(cfg, loaders)
    check_data_files(cfg, loaders)
    check_pretrained(cfg)

    resume_from = args.resume
    if resume_from == 'auto':
        # mmengine would trust work_dir/last_checkpoint blindly; after a
        # crash it can be empty or name a truncated file.
        resume_from, how = find_resume_checkpoint(cfg.work_dir)
        # Anything but the plain case (a fallback, a fresh start) stands out.
        print_log(how, logger='current',
                  level=logging.INFO if how.endswith('(last_checkpoint)')
                  else logging.WARNING)
    checkpoint = None
    if resume_from is not None:
        checkpoint = check_checkpoint(cfg, resume_from, flag='--resume')
        cfg.resume = True
        cfg.load_from = resume_from
        keep_seed(cfg, checkpoint)
    elif cfg.get('load_from'):
        check_checkpoint(cfg, cfg.load_from, flag='load_from')

    setup_launcher(cfg, args.launcher)
    adapt_to_cpu(cfg)
    # Built here, before the Runner writes its work dir, and run by it.
    model = build_model(cfg)
    if checkpoint is not None:
        check_fits(cfg, checkpoint, resume_from, model, flag='--resume')
        del checkpoint

    runner = build_runner(cfg, model)
    with stops_in_one_line(runner):
        runner.train()
    finish_distributed()


if __name__ == '__main__':
    main()
