# Copyright (c) mmnextvit contributors. All rights reserved.
"""What the tests of the main job share: the config, the shortened schedule
of their one run of the main job (``shapes_run``, run by
tests/trained_models.py) and a way to run the tools.

The run is ``demo/main_job.py`` (what ``make demo`` runs) into a temporary
folder: fresh shapes data, ``tools/train.py
configs/bundled_data/nextvit_s_shapes-cpu.py`` from scratch with only the
schedule shortened through ``--cfg-options`` (model, data pipeline and
optimiser are the config's own), the COCO evaluation on the held-out split,
the inference tool on a held-out image and the curve plot.
"""
import os
import os.path as osp
import subprocess
import sys
from typing import List


REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(REPO, 'configs', 'bundled_data',
                  'nextvit_s_shapes-cpu.py')
MAIN_JOB = osp.join(REPO, 'demo', 'main_job.py')

# The shortened schedule (see test_learns.py for what it reaches and why):
# the config's 1x shape (warmup, x0.1 after 8/12 and 11/12) over fewer
# iterations.
TRAIN_ITERS = 150
WARMUP_ITERS = 20


def schedule_options(iters: int = TRAIN_ITERS,
                     warmup: int = WARMUP_ITERS) -> List[str]:
    """``--cfg-options`` arguments that shorten the main job's schedule."""
    milestones = [iters * 8 // 12, iters * 11 // 12]
    return [
        f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}',
        f'param_scheduler.0.end={warmup}', f'param_scheduler.1.end={iters}',
        f'param_scheduler.1.milestones={milestones}',
        f'default_hooks.checkpoint.interval={iters}'
    ]


def run_tool(args: List[str],
             timeout: int = 1200) -> subprocess.CompletedProcess:
    """Run ``python <args>`` from the repository root, as a user would
    (with OpenMP threads that sleep while they wait, as demo/main_job.py
    sets them: see there)."""
    proc = subprocess.run(
        [sys.executable] + [str(a) for a in args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict({'OMP_WAIT_POLICY': 'PASSIVE'},
                 **os.environ,
                 PYTHONWARNINGS='ignore'))
    proc.output = proc.stdout + proc.stderr
    return proc
