"""Stability (docs/reliability.md, "Stability under load").

* Repeated inference at mixed image sizes in one process: resident memory
  stops growing after warm-up (tools/analysis_tools/inference_memory.py;
  the 500-call measurement is in docs/reliability.md, this test runs a
  shorter series).
* A loss that turns NaN stops training at that iteration with one line
  naming it, and no checkpoint is written from the NaN weights; without the
  hook the same run saves a checkpoint full of NaNs.
"""
import json
import os.path as osp

import pytest
import torch
from reliability_helpers import (REPO, last_checkpoint, ok, read, run,
                                 tool)

# Makes the RPN box loss NaN from the second iteration on (the weight of a
# loss term multiplies it): what an exploding gradient or a corrupt label
# does a few thousand iterations into a real run.
POISON = '''
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class PoisonLossHook(Hook):

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter == 1:
            model = getattr(runner.model, 'module', runner.model)
            model.rpn_head.loss_bbox.loss_weight = float('nan')
'''


@pytest.fixture(scope='module')
def det(tmp_path_factory):
    from det_data import make_coco_instances, write_det_config
    root = tmp_path_factory.mktemp('stability')
    make_coco_instances(str(root / 'data'))
    config = write_det_config(str(root / 'det.py'), str(root / 'data'))
    (root / 'poison_hook.py').write_text(POISON)
    return root, config


def _poisoned(root, config, stop_hook: bool) -> str:
    """A config that saves after every iteration and poisons the loss at
    iteration 2, with or without the NaN stop of the primitive config."""
    hooks = ["dict(type='PoisonLossHook')"]
    if stop_hook:
        hooks.insert(0, "dict(type='mmnextvit.StopOnInvalidLossHook')")
    path = root / f'poisoned_{stop_hook}.py'
    path.write_text(
        f'_base_ = {config!r}\n'
        "custom_imports = dict(imports=['mmnextvit', 'poison_hook'], "
        'allow_failed_imports=False)\n'
        f"custom_hooks = [{', '.join(hooks)}]\n"
        'train_cfg = dict(max_epochs=2, val_interval=10)\n'
        'default_hooks = dict(checkpoint=dict(by_epoch=False, interval=1))\n')
    return str(path)


def test_primitive_configs_stop_on_nan():
    from mmengine.config import Config
    for path in ('mask_rcnn/nextvit_s_1x.py', 'semfpn/nextvit_s_40k-bs32.py',
                 'upernet/nextvit_s_160k.py'):
        cfg = Config.fromfile(osp.join(REPO, 'configs', path))
        assert dict(type='mmnextvit.StopOnInvalidLossHook') in \
            cfg.custom_hooks, path


def test_nan_loss_stops_training_before_a_checkpoint(det):
    root, config = det
    work = root / 'stopped'
    proc = run(tool('train.py', _poisoned(root, config, True), '--work-dir',
                    work), PYTHONPATH=str(root))
    assert proc.returncode == 1, proc.output[-3000:]
    errors = [line for line in proc.stderr.splitlines() if 'error:' in line]
    assert len(errors) == 1, proc.stderr[-3000:]
    assert 'Training stopped at iteration 2: the loss is nan' in errors[0]
    assert 'loss_rpn_bbox=nan' in errors[0]
    assert '--resume' in errors[0]
    assert 'Traceback' not in proc.stderr
    # Iteration 1's checkpoint is the newest, and it is finite.
    assert not (work / 'iter_2.pth').exists()
    assert last_checkpoint(work) == str(work / 'iter_1.pth')
    state = read(work / 'iter_1.pth')['state_dict']
    assert all(torch.isfinite(v).all() for v in state.values()
               if v.is_floating_point())


def test_without_the_hook_nan_weights_are_saved(det):
    """Control: the same poisoned run without StopOnInvalidLossHook trains
    on and writes checkpoints of NaN weights."""
    root, config = det
    work = root / 'unchecked'
    ok(run(tool('train.py', _poisoned(root, config, False), '--work-dir',
                work, '--cfg-options', 'train_cfg.max_epochs=1',
                'default_hooks.checkpoint.interval=2', 'val_cfg=None',
                'val_dataloader=None', 'val_evaluator=None'),
           PYTHONPATH=str(root)))
    state = read(work / 'iter_2.pth')['state_dict']
    assert any(torch.isnan(v).any() for v in state.values()
               if v.is_floating_point())


# The series both memory tests run: 40 calls after the model is loaded,
# the first 10 a warm-up, images scaled to at most 96 pixels (five padded
# input shapes) and 10 boxes from 200 proposals per image; the
# code paths are those of full-size inference. glibc returns freed memory
# at once (--return-freed-memory), so the RSS follows the live memory.
MEMORY_SERIES = [
    '--calls', 40, '--warmup', 10, '--every', 10, '--json',
    '--return-freed-memory', '--cfg-options',
    'test_dataloader.dataset.pipeline.1.scale=(96,96)',
    'model.test_cfg.rpn.max_per_img=200', 'model.test_cfg.rcnn.max_per_img=10'
]
# The window growth allowed: the peak RSS of the last 10 calls less that
# of the first 10 after warm-up, about 20 calls apart. Measured 3.0 MiB
# without a leak (3.0 to 3.3 in earlier series of 30 calls), 20.5 MiB with
# every prediction kept (AMD EPYC, 2026-12-07): 6 MiB fails any leak of
# 0.3 MiB per call or more.
MAX_GROWTH_MB = 6
# Keeps every prediction of mmdet's inference_detector: a leak of the
# kind the test exists for (a cache keyed on inputs, kept outputs).
LEAK = """
import runpy, sys
import mmdet.apis
kept, original = [], mmdet.apis.inference_detector
mmdet.apis.inference_detector = lambda *a, **k: kept.append(
    original(*a, **k)) or kept[-1]
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name='__main__')
"""


def memory_report(proc):
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report['calls'] == 40
    return report


def test_inference_memory_stops_growing():
    """After the warm-up, the peak resident memory stops growing (the
    500-call run in docs/reliability.md measures the plateau)."""
    proc = ok(run(tool('analysis_tools/inference_memory.py', *MEMORY_SERIES,
                       '--max-growth-mb', MAX_GROWTH_MB), timeout=900))
    report = memory_report(proc)
    assert report['window_growth_mb'] <= MAX_GROWTH_MB, report


def test_inference_memory_catches_a_kept_prediction():
    """Control: the same series with every prediction kept grows past the
    bound, and the tool says so with exit status 1."""
    script = tool('analysis_tools/inference_memory.py')
    proc = run([script[0], '-c', LEAK, *script[1:], *MEMORY_SERIES,
                '--max-growth-mb', MAX_GROWTH_MB], timeout=900)
    assert proc.returncode == 1, proc.stderr[-3000:]
    report = memory_report(proc)
    assert report['window_growth_mb'] > 2 * MAX_GROWTH_MB, report
    assert 'more than --max-growth-mb 6' in proc.stderr
