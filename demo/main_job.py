# Copyright (c) mmnextvit contributors. All rights reserved.
"""The repository's main job (``make demo``): train a Next-ViT-S Mask R-CNN
from scratch on the synthetic shapes data, evaluate it with the COCO metric
and draw its predictions on a held-out image.

    python demo/main_job.py [--work-dir work_dirs/shapes_demo]
        [--data-root data/shapes] [--cfg-options KEY=VALUE ...]

Steps, each with the repository's own tools:

1. make the data (``mmnextvit.bundled_data.shapes``; a no-op when present);
2. ``tools/train.py configs/bundled_data/nextvit_s_shapes-cpu.py``, whose
   validation loop ends the run with mmdet's COCO metric (bbox and segm AP)
   on the held-out split;
3. ``tools/infer.py`` on a held-out image with the checkpoint the training
   wrote (``DetInferencer``);
4. ``tools/analysis_tools/plot_curves.py``: the loss and AP curves of the run.

The tools' logs are filtered to their progress lines here; the full logs are
in the work folder. Ends with the paths of the checkpoint, the logs, the
picture and the curves.
"""
import argparse
import collections
import glob
import json
import os
import os.path as osp
import re
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)

from mmnextvit.bundled_data import shapes  # noqa: E402

CONFIG = 'configs/bundled_data/nextvit_s_shapes-cpu.py'
# Lines of the tools' output shown while they run.
PROGRESS = re.compile(
    r'Iter\((train|val|test)\)|Saving checkpoint| - ERROR - |'
    r'^\S+: error:|^Traceback|picture\(s\) written|^written to ')
# Where the config reads its data, relative to the repository root.
DEFAULT_DATA_ROOT = osp.join(ROOT, 'data', 'shapes')


class StepFailed(RuntimeError):
    pass


def run_tool(step: str, args: List[str], log_path: str) -> None:
    """Run ``python tools/<args>`` from the repository root, echo its
    progress lines and keep its whole output in ``log_path``."""
    cmd = [sys.executable] + args
    print(f'$ {" ".join(args)}', flush=True)
    tail = collections.deque(maxlen=15)
    env = dict(os.environ, PYTHONWARNINGS='ignore', PYTHONUNBUFFERED='1')
    # OpenMP threads that sleep instead of spinning while they wait: on a
    # machine busy with other work, spinning threads of a 2-thread torch
    # step wait for each other's time slices. Measured on 2 cores at load
    # ~11: 41 s per training step spinning, 2.3 s passive.
    env.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
    with open(
            log_path, 'w', encoding='utf-8') as log, subprocess.Popen(
                cmd,
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=env) as proc:
        for line in proc.stdout:
            log.write(line)
            tail.append(line)
            if PROGRESS.search(line):
                # Without mmengine's "date - mmengine - INFO -" prefix.
                text = line.rstrip().split(' - INFO - ')[-1]
                print('  ' + text[:240], flush=True)
    if proc.returncode != 0:
        raise StepFailed(f'{step} failed (exit {proc.returncode}); the end '
                         f'of its output ({log_path}):\n{"".join(tail)}')


def pick_image(data_root: str) -> str:
    """The first validation image with the most objects: a picture that
    shows all classes when it can."""
    with open(shapes.annotation_file(data_root, 'val'), encoding='utf-8') as f:
        coco = json.load(f)
    counts: Dict[int, set] = {}
    for ann in coco['annotations']:
        counts.setdefault(ann['image_id'], set()).add(ann['category_id'])
    best = max(sorted(counts), key=lambda i: len(counts[i]))
    name = next(i['file_name'] for i in coco['images'] if i['id'] == best)
    return osp.join(data_root, 'val', name)


def newest(pattern: str) -> Optional[str]:
    found = sorted(glob.glob(pattern), key=os.path.getmtime)
    return found[-1] if found else None


def last_metrics(scalars_file: str) -> Dict[str, float]:
    """The validation metrics mmengine logged last in ``scalars_file``."""
    metrics: Dict[str, float] = {}
    if osp.isfile(scalars_file):
        with open(scalars_file, encoding='utf-8') as f:
            for line in f:
                record = json.loads(line)
                if any(key.startswith('coco/') for key in record):
                    metrics = record
    return metrics


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument(
        '--work-dir',
        default='work_dirs/shapes_demo',
        help='folder for the checkpoint, logs and picture '
        '(default: work_dirs/shapes_demo)')
    parser.add_argument(
        '--data-root',
        default='data/shapes',
        help='where the shapes data are made (default: data/shapes)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        default=[],
        metavar='KEY=VALUE',
        help='passed to tools/train.py, e.g. train_cfg.max_iters=50')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    work_dir = osp.abspath(args.work_dir)
    data_root = osp.abspath(args.data_root)

    def elapsed() -> str:
        seconds = int(time.perf_counter() - start)
        return f'{seconds // 60}m{seconds % 60:02d}s'

    print(f'[1/4] data: {data_root}', flush=True)
    try:
        shapes.generate(data_root)
    except (ValueError, OSError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    os.makedirs(work_dir, exist_ok=True)

    data_opts = (
        shapes.config_options(data_root)
        if data_root != DEFAULT_DATA_ROOT else [])
    cfg_options = data_opts + list(args.cfg_options)
    try:
        print(f'[2/4] train and evaluate ({elapsed()})', flush=True)
        run_tool('training',
                 ['tools/train.py', CONFIG, '--work-dir', work_dir] +
                 (['--cfg-options'] + cfg_options if cfg_options else []),
                 osp.join(work_dir, 'train_output.txt'))
        with open(
                osp.join(work_dir, 'last_checkpoint'), encoding='utf-8') as f:
            checkpoint = f.read().strip()
        run_dir = osp.dirname(newest(osp.join(work_dir, '*', '*.log')))

        print(f'[3/4] inference ({elapsed()})', flush=True)
        image = pick_image(data_root)
        vis_dir = osp.join(work_dir, 'vis')
        run_tool('inference', [
            'tools/infer.py', CONFIG, image, '--weights', checkpoint,
            '--out-dir', vis_dir
        ], osp.join(work_dir, 'infer_output.txt'))

        print(f'[4/4] curves ({elapsed()})', flush=True)
        curves = osp.join(work_dir, 'curves.png')
        run_tool('plotting', [
            'tools/analysis_tools/plot_curves.py', run_dir, '--out', curves,
            '--title', 'Next-ViT-S Mask R-CNN on the shapes data'
        ], osp.join(work_dir, 'plot_output.txt'))
    except StepFailed as e:
        print(f'error: {e}', file=sys.stderr)
        return 1

    picture = osp.join(vis_dir, osp.splitext(osp.basename(image))[0] + '.png')
    metrics = last_metrics(osp.join(run_dir, 'vis_data', 'scalars.json'))
    print(f'\nDone in {elapsed()}.')
    print('COCO AP on the held-out split: ' + (', '.join(
        f'{k} {metrics[f"coco/{k}"]:.3f}'
        for k in ('bbox_mAP', 'bbox_mAP_50', 'segm_mAP', 'segm_mAP_50')
        if f'coco/{k}' in metrics) or 'none (no detections)'))
    print(f'checkpoint:   {checkpoint}')
    print(f'training log: {osp.join(run_dir, osp.basename(run_dir) + ".log")}')
    print(f'picture:      {picture} (predictions on {image})')
    print(f'curves:       {curves}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
