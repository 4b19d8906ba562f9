"""Session fixtures; the helpers the tests import live in helpers.py.

``make test`` runs the suite in two pytest-xdist workers, one core each
(``--dist loadgroup``): every test module is one group, so its module- and
session-scoped fixtures (a training run, an export) are made once, and the
modules of ``test_main_job/`` share one group, since they share the session's
run of the main job.
"""
import os
import os.path as osp
import sys

import pytest
import torch
from helpers import DATA

# Test modules that train, export or run the tools end to end (minutes on
# 2 CPU cores); marked ``slow`` so that ``make test-quick`` (-m "not slow")
# runs the unit tests alone. ``make test`` runs everything.
SLOW_MODULES = (
    'test_benchmark_tools.py', 'test_configs_mask_rcnn.py',
    'test_configs_seg.py', 'test_crash_resume.py', 'test_curves.py',
    'test_deploy.py', 'test_deployed_app.py', 'test_downstream.py',
    'test_export_onnx.py', 'test_gpu_benchmark.py', 'test_mmdeploy_tools.py',
    'test_precision.py', 'test_quickstart.py', 'test_seg_training.py',
    'test_stability.py',
    'test_tools.py', 'test_main_job/')


def pytest_configure(config):
    if os.environ.get('PYTEST_XDIST_WORKER'):
        # Two workers on two cores: one thread each, for the tests and the
        # tools they start, rather than four threads fighting over two.
        os.environ['OMP_NUM_THREADS'] = '1'
        torch.set_num_threads(1)


# First, so that pytest-xdist's own hook sees the groups.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    for item in items:
        path = item.path.as_posix()
        if any(path.endswith(name) or f'/{name}' in path
               for name in SLOW_MODULES):
            item.add_marker(pytest.mark.slow)
        group = ('test_main_job' if '/test_main_job/' in path else
                 item.path.relative_to(config.rootpath).as_posix())
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(scope='session')
def parity():
    """Upstream Next-ViT-S outputs on seeded weights (see tests/data)."""
    return torch.load(
        osp.join(DATA, 'nextvit_small_parity.pt'), weights_only=False)


@pytest.fixture(scope='session')
def shapes_run(tmp_path_factory):
    """One run of the main job for the tests of tests/test_main_job/ (see
    main_job_run.py there). Defined here: a conftest.py in that folder would
    be imported under the same module name as this one."""
    sys.path.insert(0, osp.join(osp.dirname(__file__), 'test_main_job'))
    from main_job_run import main_job_run
    yield from main_job_run(tmp_path_factory)
