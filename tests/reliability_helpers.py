"""Shared pieces of the reliability tests (docs/reliability.md): the bundled
shapes data at test size, the command line that shrinks the bundled CPU
config, processes started, watched and killed like a user's, and reading
their checkpoints.
"""
import glob
import os
import os.path as osp
import signal
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
PYTHON = sys.executable
TOOLS = osp.join(REPO, 'tools')
SHAPES_CONFIG = osp.join(REPO, 'configs', 'bundled_data',
                         'nextvit_s_shapes-cpu.py')


def make_shapes(root: str) -> str:
    """The bundled generator's data at test size: 8 train and 2 val images
    of 64 x 64 pixels. Returns the data root (with a trailing slash, as the
    config's)."""
    from mmnextvit.bundled_data.shapes import ShapesConfig, generate
    generate(root, ShapesConfig(num_train=8, num_val=2, img_size=64,
                                min_size=12, max_size=24, max_objects=2),
             progress=False)
    return osp.join(root, '')


def shapes_options(data_root: str, max_iters: int) -> List[str]:
    """--cfg-options that shrink the bundled CPU config: the test-size data,
    64-pixel training images, ``max_iters`` iterations, no validation, a
    fixed seed and a log line per iteration. Model, optimiser, schedule
    shape and hooks stay the config's."""
    ann = osp.join(data_root, 'annotations', 'instances_val.json')
    return [
        f'train_dataloader.dataset.data_root={data_root}',
        f'test_dataloader.dataset.data_root={data_root}',
        f'test_evaluator.ann_file={ann}',
        'train_dataloader.dataset.pipeline.2.scale=(64,64)',
        'val_cfg=None', 'val_dataloader=None', 'val_evaluator=None',
        f'train_cfg.max_iters={max_iters}',
        'randomness.seed=0',
        'default_hooks.logger.interval=1',
    ]


def tool(name: str, *args) -> List[str]:
    return [PYTHON, osp.join(TOOLS, name), *[str(a) for a in args]]


def run(args, timeout: float = 600, **env) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True,
        timeout=timeout, cwd=REPO, env=dict(os.environ, **env))
    proc.output = proc.stdout + proc.stderr
    return proc


def ok(proc):
    assert proc.returncode == 0, proc.output[-4000:]
    return proc


def run_until(args, condition: Callable[[], bool], log: str,
              timeout: float = 600, poll: float = 0.005,
              **env) -> Dict[str, float]:
    """Start ``args`` and SIGKILL it the moment ``condition()`` holds.

    Returns the exit status and when the kill was sent. Fails if the
    process ends by itself first.
    """
    with open(log, 'w') as out:
        proc = subprocess.Popen(
            [str(a) for a in args], cwd=REPO, stdout=out,
            stderr=subprocess.STDOUT, env=dict(os.environ, **env))
        start = time.monotonic()
        try:
            while proc.poll() is None:
                if condition():
                    proc.send_signal(signal.SIGKILL)
                    killed = time.monotonic()
                    return dict(returncode=proc.wait(), killed_at=killed)
                if time.monotonic() - start > timeout:
                    raise AssertionError(f'{args} did not reach the point '
                                         f'to kill it in {timeout}s')
                time.sleep(poll)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    with open(log) as f:
        raise AssertionError('the process ended before it could be killed '
                             f'(status {proc.returncode}):\n'
                             + f.read()[-3000:])


def read(path) -> dict:
    """A checkpoint as mmengine reads it (through the package's safe
    loader, on every torch)."""
    from mmnextvit.engine.safe_loading import read_checkpoint
    return read_checkpoint(str(path), map_location='cpu')


def temp_files(folder, name: str) -> List[str]:
    """AtomicLocalBackend's temporary files for ``name`` in ``folder``."""
    return glob.glob(osp.join(glob.escape(str(folder)), f'.{name}.*.tmp'))


def last_checkpoint(work_dir) -> Optional[str]:
    path = osp.join(str(work_dir), 'last_checkpoint')
    if not osp.isfile(path):
        return None
    with open(path) as f:
        return f.read().strip()
