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
    'test_deploy.py', 'test_deployed_app.py', 'test_docs_tools.py',
    'test_downstream.py',
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


# The order in which the two workers take the modules (pytest-xdist hands
# out groups in collection order under --no-loadscope-reorder): the two
# modules that train the session's shared models first, one per worker, so
# that each trains while the other works; then the longest modules that need
# no trained model (each worker takes the next when it is done: longest
# first balances the two); the modules that need the main job's model last,
# so that no worker waits for it while there is other work.
FIRST = ('test_main_job/', 'test_seg_training.py')
LONGEST = ('test_tools.py', 'test_deploy.py', 'test_quantize.py',
           'test_benchmark_tools.py', 'test_crash_resume.py',
           'test_quickstart.py', 'test_stability.py', 'test_weights.py')
LAST = ('test_deployed_app.py', 'test_mmdeploy_tools.py')


def _turn(path: str) -> tuple:
    for rank, names in enumerate((FIRST, LONGEST)):
        for place, name in enumerate(names):
            if path.endswith(name) or f'/{name}' in path:
                return rank, place
    if any(path.endswith(name) for name in LAST):
        return 3, 0
    return 2, 0


# First, so that pytest-xdist's own hook sees the groups.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: _turn(item.path.as_posix()))  # stable
    for item in items:
        path = item.path.as_posix()
        if any(path.endswith(name) or f'/{name}' in path
               for name in SLOW_MODULES):
            item.add_marker(pytest.mark.slow)
        group = ('test_main_job' if '/test_main_job/' in path else
                 item.path.relative_to(config.rootpath).as_posix())
        item.add_marker(pytest.mark.xdist_group(group))


class _CurrentStdout:
    """sys.stdout as it is when written to, not when a logger was made."""

    def write(self, text):
        return sys.stdout.write(text)

    def flush(self):
        sys.stdout.flush()


@pytest.fixture(autouse=True)
def mmengine_logs_to_this_test():
    """mmengine's loggers keep the stream they were made with: under
    pytest's capture that is the capture of the test that made them, closed
    by the time a later test in the same worker logs ("--- Logging error
    ---" on that test's stderr). Point them at whatever stdout is now."""
    import logging
    from mmengine.logging import MMLogger
    for logger in MMLogger._instance_dict.values():
        for handler in logger.handlers:
            if type(handler) is logging.StreamHandler:
                handler.stream = _CurrentStdout()  # the old one may be shut
    yield


@pytest.fixture(scope='session')
def parity():
    """Upstream Next-ViT-S outputs on seeded weights (see tests/data)."""
    return torch.load(
        osp.join(DATA, 'nextvit_small_parity.pt'), weights_only=False)


@pytest.fixture(scope='session')
def shapes_run(tmp_path_factory):
    """One run of the main job for the whole session (see
    trained_models.main_job_output): its trained Mask R-CNN serves the tests
    of tests/test_main_job/ and every test that needs a trained detector."""
    from trained_models import main_job_output, shared
    return shared(tmp_path_factory, 'main_job', main_job_output)


@pytest.fixture(scope='session')
def trained_segmentor(tmp_path_factory):
    """The bundled Semantic FPN trained once for the whole session (see
    trained_models.train_segmentor)."""
    from trained_models import shared, train_segmentor
    return shared(tmp_path_factory, 'segmentor', train_segmentor)
