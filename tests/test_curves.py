# Copyright (c) mmnextvit contributors. All rights reserved.
"""Seeing a run: ``tools/train.py --tensorboard`` writes TensorBoard event
files next to the usual scalars, and ``tools/analysis_tools/plot_curves.py``
draws a run's loss and metric curves to a PNG (iteration- and epoch-based
runs), with one-line errors for bad input."""
import glob
import json
import os
import os.path as osp
import shutil
import subprocess
import sys

import cv2
import pytest
from det_data import make_coco_instances, write_det_config

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
PLOT = osp.join(REPO, 'tools', 'analysis_tools', 'plot_curves.py')
TRAIN = osp.join(REPO, 'tools', 'train.py')


def run(*args, timeout=600):
    proc = subprocess.run([sys.executable] + [str(a) for a in args],
                          capture_output=True,
                          text=True,
                          timeout=timeout,
                          cwd=REPO)
    proc.output = proc.stdout + proc.stderr
    return proc


def write_scalars(path, records):
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        for record in records:
            f.write(json.dumps(record) + '\n')


def iter_based_run(folder):
    """The records an iteration-based mmdet run logs: a loss every 10
    iterations, a validation after 60 and 120 (logged with step 0, as
    MMEngine logs the metrics of an iteration-based run)."""
    records = []
    for it in range(10, 130, 10):
        records.append(
            dict(lr=1e-4, loss=3. / it, loss_mask=1. / it, time=.6, step=it))
        if it % 60 == 0:
            records.append({
                'coco/bbox_mAP': it / 200,
                'coco/segm_mAP': it / 250,
                'coco/bbox_mAP_50': it / 150,
                'data_time': .01,
                'time': .2,
                'step': 0
            })
    path = osp.join(folder, '20260101_000000', 'vis_data', 'scalars.json')
    write_scalars(path, records)
    return path


def test_plots_an_iteration_based_run(tmp_path):
    scalars = iter_based_run(str(tmp_path / 'work'))
    proc = run(PLOT, tmp_path / 'work')
    assert proc.returncode == 0, proc.output
    assert ('loss (12 points, 10..120), coco/bbox_mAP (2 points, 60..120), '
            'coco/segm_mAP (2 points, 60..120)') in proc.stdout
    out = osp.join(osp.dirname(scalars), 'curves.png')
    assert cv2.imread(out).shape == (400, 1200, 3)


def test_chosen_keys_and_one_panel(tmp_path):
    iter_based_run(str(tmp_path / 'work'))
    out = tmp_path / 'loss.png'
    proc = run(PLOT, tmp_path / 'work', '--keys', 'loss', 'loss_mask',
               '--out', out)
    assert proc.returncode == 0, proc.output
    assert ('loss (12 points, 10..120), loss_mask (12 points, 10..120)'
            in proc.stdout)
    assert cv2.imread(str(out)).shape == (400, 600, 3)


@pytest.mark.parametrize('case', ['missing', 'no_run', 'bad_key', 'empty'])
def test_bad_input_gets_one_line(tmp_path, case):
    work = tmp_path / 'work'
    work.mkdir()
    args = [work]
    if case == 'missing':
        args = [tmp_path / 'nowhere']
        expected = 'does not exist'
    elif case == 'no_run':
        expected = 'no vis_data/scalars.json'
    elif case == 'bad_key':
        iter_based_run(str(work))
        args += ['--keys', 'loss', 'mIoU']
        expected = '--keys mIoU: not in'
    else:
        write_scalars(str(work / 'scalars.json'), [])
        expected = 'holds no records yet'
    proc = run(PLOT, *args, '--out', tmp_path / 'out.png')
    assert proc.returncode == 2, proc.output
    (line, ) = proc.stderr.strip().splitlines()
    assert expected in line and str(args[0]) in line
    assert not (tmp_path / 'out.png').exists()


@pytest.fixture(scope='module')
def tensorboard_run(tmp_path_factory):
    """Two training iterations of the small detector (one epoch, then the
    validation) with --tensorboard."""
    root = tmp_path_factory.mktemp('curves')
    make_coco_instances(str(root / 'data'))
    config = write_det_config(str(root / 'det.py'), str(root / 'data'))
    proc = run(TRAIN, config, '--work-dir', root / 'work', '--tensorboard')
    assert proc.returncode == 0, proc.output[-4000:]
    yield root / 'work'
    shutil.rmtree(root, ignore_errors=True)


def test_train_writes_tensorboard_events(tensorboard_run):
    (vis_data, ) = glob.glob(str(tensorboard_run / '*' / 'vis_data'))
    events = glob.glob(osp.join(vis_data, 'events.out.tfevents.*'))
    assert events, os.listdir(vis_data)
    from tensorboard.backend.event_processing.event_accumulator import \
        EventAccumulator
    acc = EventAccumulator(vis_data)
    acc.Reload()
    tags = acc.Tags()['scalars']
    assert 'loss' in tags and 'coco/bbox_mAP' in tags
    assert [e.step for e in acc.Scalars('loss')] == [1, 2]
    # The config's own backend still writes the JSON scalars.
    assert osp.isfile(osp.join(vis_data, 'scalars.json'))


def test_plots_an_epoch_based_run(tensorboard_run, tmp_path):
    out = tmp_path / 'curves.png'
    proc = run(PLOT, tensorboard_run, '--out', out)
    assert proc.returncode == 0, proc.output
    # Losses against the iteration, metrics against the epoch.
    assert 'loss (2 points, 1..2), coco/bbox_mAP (1 points, 1..1)' in \
        proc.stdout
    assert cv2.imread(str(out)).shape[:2] == (400, 1200)
