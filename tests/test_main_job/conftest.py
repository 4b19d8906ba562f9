# Copyright (c) mmnextvit contributors. All rights reserved.
"""One real run of the main job, shared by the tests of this folder (see
main_job_run.py)."""
import glob
import json
import os.path as osp
import re
import shutil
from typing import Dict

import pytest
from main_job_run import MAIN_JOB, run_tool, schedule_options


@pytest.fixture(scope='session')
def shapes_run(tmp_path_factory) -> Dict:
    """Run ``demo/main_job.py`` with the shortened schedule and a fixed seed;
    return the folders, the paths it printed, the logged scalars and its
    output."""
    base = tmp_path_factory.mktemp('main_job')
    data_root = str(base / 'shapes')
    work_dir = str(base / 'work_dir')
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
    yield dict(
        data_root=data_root,
        work_dir=work_dir,
        printed=printed,
        checkpoint=printed.get('checkpoint'),
        scalars=scalars,
        output=proc.stdout)
    # A checkpoint with its optimiser state is about 600 MB.
    shutil.rmtree(work_dir, ignore_errors=True)
