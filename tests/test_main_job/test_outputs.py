# Copyright (c) mmnextvit contributors. All rights reserved.
"""The main job (the session's run of demo/main_job.py, conftest.py) shows
its progress and ends with the paths of what it wrote, all of which exist:
the checkpoint, the training log, the prediction picture and the curves."""
import os.path as osp

import cv2
from main_job_run import TRAIN_ITERS


def test_progress_is_shown(shapes_run):
    out = shapes_run['output']
    for step in ('[1/4] data', '[2/4] train and evaluate', '[3/4] inference',
                 '[4/4] curves'):
        assert step in out
    # mmengine's progress lines, every logger interval (10 iterations).
    assert f'Iter(train) [{TRAIN_ITERS}/{TRAIN_ITERS}]' in out
    assert 'Iter(val)' in out
    assert 'COCO AP on the held-out split: bbox_mAP' in out


def test_it_prints_where_everything_is(shapes_run):
    printed = shapes_run['printed']
    assert set(printed) == {'checkpoint', 'training log', 'picture', 'curves'}
    for path in printed.values():
        assert osp.isfile(path), path
        assert path.startswith(shapes_run['work_dir'])
    assert printed['checkpoint'].endswith(f'iter_{TRAIN_ITERS}.pth')
    with open(printed['training log']) as f:
        assert f'Iter(train) [{TRAIN_ITERS}/{TRAIN_ITERS}]' in f.read()
    picture = cv2.imread(printed['picture'])
    # Drawn on the 256 x 256 validation image itself.
    assert picture.shape == (256, 256, 3)
    curves = cv2.imread(printed['curves'])
    # Two panels (loss, validation AP) of 6 x 4 inches at 100 dpi.
    assert curves.shape == (400, 1200, 3)
