#!/usr/bin/env python
# Copyright (c) mmnextvit contributors. All rights reserved.
"""Plot the loss and metric curves of a training run to a PNG.

    python tools/analysis_tools/plot_curves.py WORK_DIR [--out curves.png]
    python tools/analysis_tools/plot_curves.py RUN/vis_data/scalars.json \\
        --keys loss loss_mask coco/segm_mAP

The input is what MMEngine's ``LocalVisBackend`` writes during training (in
every config of this repository): ``<work_dir>/<timestamp>/vis_data/
scalars.json``, one JSON record per logged training iteration and per
validation. Given a work folder, the newest run in it is plotted.

By default the total loss is drawn on the left against the iteration, and
the main validation metrics (COCO ``bbox_mAP`` / ``segm_mAP`` for detection,
``mIoU`` for segmentation) on the right, against the iteration or epoch of
the validation. ``--keys`` chooses other series; a loss-like key (any
training scalar) goes left, a validation key right.

The ``analyze_logs.py`` scripts shipped inside mmdet and mmseg read the same
file, but mmdet's groups records by epoch (an iteration-based run such as the
main job's lands in one "epoch" and its validation step breaks the iteration
axis) and mmseg's needs seaborn and draws losses and metrics on one axis;
this tool reads both kinds of run and keeps the two scales apart.
"""
import argparse
import glob
import json
import os
import os.path as osp
import sys
from typing import Dict, List, Optional, Sequence, Tuple

# Validation metrics drawn when --keys is not given, when the run has them.
DEFAULT_METRICS = ('coco/bbox_mAP', 'coco/segm_mAP', 'mIoU')
# Bookkeeping fields of the records, never plotted.
NOT_SERIES = {
    'step', 'iter', 'epoch', 'time', 'data_time', 'memory', '_after_iter'
}


class CurveError(ValueError):
    """Bad input, with a message that names it and the fix."""


def find_scalars(path: str) -> str:
    """The ``scalars.json`` file meant by ``path`` (the file itself, a run
    folder, or a work folder whose newest run is taken)."""
    if osp.isfile(path):
        return path
    if not osp.isdir(path):
        raise CurveError(f"'{path}' does not exist; give a work folder of "
                         'tools/train.py or its vis_data/scalars.json')
    for pattern in ('scalars.json', osp.join('vis_data', 'scalars.json'),
                    osp.join('*', 'vis_data', 'scalars.json')):
        found = sorted(
            glob.glob(osp.join(path, pattern)), key=osp.getmtime)
        if found:
            return found[-1]
    raise CurveError(
        f"no vis_data/scalars.json under '{path}'; is it the --work-dir of "
        'a training run (the config needs LocalVisBackend in '
        'visualizer.vis_backends)?')


def read_records(scalars_file: str) -> Tuple[List[Dict], List[Dict]]:
    """Training records (with a loss) and validation records; each
    validation record gets ``_after_iter``, the iteration of the training
    record logged before it."""
    train, val = [], []
    last_iter = 0
    with open(scalars_file, encoding='utf-8') as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                raise CurveError(
                    f"'{scalars_file}' line {number} is not JSON; give the "
                    'scalars.json that MMEngine wrote') from None
            if not isinstance(record, dict):
                continue
            if 'loss' in record:
                train.append(record)
                last_iter = record.get('iter', record.get('step', last_iter))
            else:
                record['_after_iter'] = last_iter
                val.append(record)
    if not train and not val:
        raise CurveError(f"'{scalars_file}' holds no records yet; plot it "
                         'once the run has logged (default_hooks.logger'
                         '.interval iterations)')
    return train, val


def _series(records: List[Dict], key: str,
            x_keys: Sequence[str]) -> Tuple[List[float], List[float]]:
    xs, ys = [], []
    for record in records:
        value = record.get(key)
        if isinstance(value, (int, float)):
            x = next((record[k] for k in x_keys if k in record), len(xs) + 1)
            xs.append(x)
            ys.append(value)
    return xs, ys


def _keys(records: List[Dict]) -> List[str]:
    seen: Dict[str, None] = {}
    for record in records:
        for key, value in record.items():
            if key not in NOT_SERIES and isinstance(value, (int, float)):
                seen[key] = None
    return list(seen)


def plot(scalars_file: str, out: str,
         keys: Optional[Sequence[str]] = None,
         title: Optional[str] = None) -> Dict[str, List[float]]:
    """Draw the curves of ``scalars_file`` into ``out`` (PNG); returns the
    x positions drawn per key."""
    train, val = read_records(scalars_file)
    train_keys, val_keys = _keys(train), _keys(val)
    if keys:
        unknown = [k for k in keys if k not in train_keys + val_keys]
        if unknown:
            raise CurveError(
                f"--keys {' '.join(unknown)}: not in '{scalars_file}'; it "
                f"logs {', '.join(train_keys + val_keys) or 'nothing'}")
        left = [k for k in keys if k in train_keys]
        right = [k for k in keys if k in val_keys and k not in left]
    else:
        left = ['loss'] if 'loss' in train_keys else []
        right = [k for k in DEFAULT_METRICS if k in val_keys]

    # Training records of epoch-based runs carry 'epoch' and 'iter' (the
    # global iteration), their validations 'step' = epoch. Iteration-based
    # runs log 'step' = iteration for training, but their validations with
    # step 0 (MMEngine logs metrics by epoch, and such a run stays in epoch
    # 0): those are placed at the iteration logged just before them.
    by_epoch = any('epoch' in r for r in train)
    val_axis = 'epoch' if by_epoch else 'iteration'
    val_x = ('step', ) if by_epoch else ('_after_iter', )

    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    panels = [p for p in (left, right) if p]
    fig, axes = plt.subplots(
        1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    drawn: Dict[str, List[float]] = {}
    for ax, panel in zip(axes[0], panels):
        for key in panel:
            if panel is left:
                xs, ys = _series(train, key, ('iter', 'step'))
                ax.plot(xs, ys, label=key, linewidth=1)
                ax.set_xlabel('iteration')
            else:
                xs, ys = _series(val, key, val_x)
                ax.plot(xs, ys, label=key, marker='o')
                ax.set_xlabel(val_axis)
            drawn[key] = xs
        if panel is right:
            # Metrics from zero, with room for the legend above the curves.
            ax.set_ylim(0, ax.get_ylim()[1] * 1.15)
        ax.set_title('training' if panel is left else 'validation')
        ax.grid(True, alpha=.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    parent = osp.dirname(osp.abspath(out))
    os.makedirs(parent, exist_ok=True)
    # Written beside the target and moved into place: never half a PNG.
    tmp = osp.join(parent, f'.{osp.basename(out)}.tmp.png')
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, out)
    return drawn


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Plot loss and metric curves of a training run to a '
        'PNG.')
    parser.add_argument(
        'run', help='work folder of tools/train.py, a run folder in it, or '
        'its vis_data/scalars.json')
    parser.add_argument(
        '--keys',
        nargs='+',
        help='series to draw (default: loss, and coco/bbox_mAP, '
        'coco/segm_mAP or mIoU when logged)')
    parser.add_argument(
        '--out',
        default=None,
        help='PNG to write (default: curves.png beside scalars.json)')
    parser.add_argument('--title', default=None, help='figure title')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        scalars_file = find_scalars(args.run)
        out = args.out or osp.join(osp.dirname(scalars_file), 'curves.png')
        drawn = plot(scalars_file, out, args.keys, args.title)
    except CurveError as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    points = ', '.join(f'{k} ({len(xs)} points, {xs[0]}..{xs[-1]})'
                       for k, xs in drawn.items() if xs)
    print(f'curves of {scalars_file}: {points}')
    print(f'written to {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
