"""Trained models the whole test session shares: the main job's Mask R-CNN
and the bundled Semantic FPN, each trained once per ``pytest`` run, whichever
pytest-xdist worker asks first (the other waits for it, then reads the same
files). Tests that compare an export, an int8 model or an application with
PyTorch use these: seeded weights give near-uniform outputs that cannot tell
a right export from a wrong one.

The fixtures that expose them are in tests/conftest.py (``shapes_run``,
``trained_segmentor``).
"""
import glob
import json
import os
import os.path as osp
import re
import subprocess
import sys
from typing import Callable, Dict

from filelock import FileLock

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
SEG_CONFIG = osp.join(REPO, 'configs', 'bundled_data',
                      'nextvit_s_seg-shapes-cpu.py')
SEG_LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def shared(tmp_path_factory, name: str, make: Callable[[str], Dict]) -> Dict:
    """``make(folder)`` run once per session across workers; its result (a
    JSON-able dict) is kept beside the folder for the other workers. A
    failure is not kept: the next worker to ask runs ``make`` again and
    reports it too."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get('PYTEST_XDIST_WORKER'):
        base = base.parent  # the workers' common folder
    folder = base / f'shared_{name}'
    with FileLock(str(base / f'shared_{name}.lock')):
        done = base / f'shared_{name}.json'
        if done.exists():
            return json.loads(done.read_text())
        folder.mkdir(exist_ok=True)
        result = make(str(folder))
        done.write_text(json.dumps(result))
        return result


def seg_data_options(root: str):
    return [f'{loader}.dataset.data_root={root}' for loader in SEG_LOADERS]


def trained_seg_config(trained_segmentor: Dict, folder,
                       **test_dataset) -> str:
    """``folder/seg.py``: the config of the session's trained Semantic FPN
    with every loader reading the data it learnt; ``test_dataset`` adds to
    the test loader's dataset (e.g. ``indices=8``)."""
    lines = [f'_base_ = {SEG_CONFIG!r}']
    for loader in SEG_LOADERS:
        dataset = dict(data_root=trained_segmentor['data'])
        if loader == 'test_dataloader':
            dataset.update(test_dataset)
        lines.append(f'{loader} = dict(dataset={dataset!r})')
    path = osp.join(str(folder), 'seg.py')
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return path


def train_segmentor(folder: str) -> Dict:
    """The bundled Semantic FPN trained with tools/train.py on freshly
    generated seg_shapes data (seed 0, the config's 150 iterations), as
    tests/test_seg_training.py describes what it reaches."""
    from mmnextvit.bundled_data import seg_shapes
    data = osp.join(folder, 'seg_shapes')
    seg_shapes.generate(data, seg_shapes.SegShapesConfig(), progress=False)
    work_dir = osp.join(folder, 'work_dir')
    result = subprocess.run(
        [
            sys.executable, 'tools/train.py', SEG_CONFIG, '--work-dir',
            work_dir, '--cfg-options', 'randomness.seed=0',
            *seg_data_options(data)
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=3600)
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = osp.join(work_dir, 'iter_150.pth')
    assert osp.isfile(checkpoint), os.listdir(work_dir)
    (scalars, ) = glob.glob(osp.join(work_dir, '*', 'vis_data',
                                     'scalars.json'))
    with open(scalars) as f:
        records = [json.loads(line) for line in f if line.strip()]
    images = sorted(
        glob.glob(osp.join(data, 'images', 'validation', '*.jpg')))
    return dict(
        config=SEG_CONFIG,
        work_dir=work_dir,
        checkpoint=checkpoint,
        losses=[r['loss'] for r in records if 'loss' in r],
        miou=[r['mIoU'] for r in records if 'mIoU' in r][-1],
        data=data,
        images=images)


def main_job_output(folder: str) -> Dict:
    """``demo/main_job.py`` with the shortened schedule of
    tests/test_main_job/main_job_run.py, into ``folder``."""
    sys.path.insert(0, osp.join(REPO, 'tests', 'test_main_job'))
    from main_job_run import MAIN_JOB, run_tool, schedule_options
    data_root = osp.join(folder, 'shapes')
    work_dir = osp.join(folder, 'work_dir')
    proc = run_tool([
        MAIN_JOB, '--work-dir', work_dir, '--data-root', data_root,
        '--cfg-options', *schedule_options(), 'randomness.seed=0'
    ])
    assert proc.returncode == 0, proc.output[-4000:]
    printed = dict(
        re.findall(r'^(checkpoint|training log|picture|curves): +(\S+)',
                   proc.stdout, re.M))
    (scalars_file, ) = glob.glob(
        osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    with open(scalars_file) as f:
        scalars = [json.loads(line) for line in f if line.strip()]
    return dict(
        data_root=data_root,
        work_dir=work_dir,
        printed=printed,
        checkpoint=printed.get('checkpoint'),
        scalars=scalars,
        output=proc.stdout)


def images_with_three_classes(data: str, count: int = 3):
    """The first ``count`` held-out seg_shapes images whose annotation
    holds three classes or more (the background and two kinds of shape;
    0 is the ignored label)."""
    import cv2
    import numpy as np
    found = []
    for image in sorted(
            glob.glob(osp.join(data, 'images', 'validation', '*.jpg'))):
        annotation = osp.join(
            data, 'annotations', 'validation',
            osp.splitext(osp.basename(image))[0] + '.png')
        if len(set(np.unique(cv2.imread(annotation, 0))) - {0}) >= 3:
            found.append(image)
    assert len(found) >= count, found
    return found[:count]
