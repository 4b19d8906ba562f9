"""Loading checkpoints safely on torch 2.13 (docs/reliability.md).

A crafted ``.pth`` whose unpickling would create a file (``open``
as a pickle reduce) is refused, with one line naming what it holds, by every
path that reads checkpoints: our ``tools/test.py``, ``tools/train.py
--resume`` (with a path and without), the stock mmdet and mmseg
``test.py``, ``init_detector``, ``init_model``, ``DetInferencer`` and
``MMSegInferencer``; the file is never created. A truncated checkpoint and
a file that is no checkpoint get one clear line each on the same paths.
The stock scripts are also run with ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``,
which turns torch's safe default off for the whole process.
"""
import os
import os.path as osp
import runpy
import sys

import pytest
import torch
from helpers import assert_one_line_error
from reliability_helpers import REPO, run

import mmnextvit  # noqa: F401  (installs the checkpoint loader)
from mmnextvit.engine.safe_loading import CheckpointError

SITE = osp.dirname(osp.dirname(torch.__file__))
STOCK_TEST = {
    'mmdet': osp.join(SITE, 'mmdet', '.mim', 'tools', 'test.py'),
    'mmseg': osp.join(SITE, 'mmseg', '.mim', 'tools', 'test.py'),
}


class _CreatesFile:
    """Unpickles as ``open(path, 'w')``: a file appears if it runs."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, 'w'))


def _crafted(path, target):
    """A checkpoint-shaped file with the payload in its meta."""
    torch.save({'meta': {'note': _CreatesFile(target)},
                'state_dict': {'w': torch.zeros(2)}}, str(path))
    return path


@pytest.fixture
def bad_files(tmp_path):
    """{kind: (path, expected words)}; ``target`` must never appear."""
    target = tmp_path / 'PWNED'
    good = tmp_path / 'good.pth'
    torch.save({'meta': {}, 'state_dict': {'w': torch.zeros(1000)}},
               str(good))
    truncated = tmp_path / 'truncated.pth'
    truncated.write_bytes(good.read_bytes()[:300])
    foreign = tmp_path / 'notes.pth'
    foreign.write_text('this is a text file, not a checkpoint\n')
    files = {
        'crafted': (_crafted(tmp_path / 'crafted.pth', target),
                    ['refusing to load', 'holds io.open,']),
        'truncated': (truncated, ['not a readable PyTorch checkpoint']),
        'foreign': (foreign, ['not a readable PyTorch checkpoint']),
    }
    yield files, target
    assert not target.exists(), 'a checkpoint ran code while loading'


def test_the_payload_is_real(tmp_path):
    """Control: loaded the unsafe way, the crafted file does create its
    file, so the refusals below are what keep it from doing so."""
    target = tmp_path / 'created'
    path = _crafted(tmp_path / 'crafted.pth', target)
    torch.load(str(path), weights_only=False)
    assert target.exists()


def test_mmengine_loader_alone_would_run_it_when_forced(
        tmp_path, monkeypatch):
    """Control: mmengine's own local loader leaves weights_only to torch's
    default, which TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 turns off; the loader
    mmnextvit installs in its place does not depend on it."""
    from mmengine.runner.checkpoint import (CheckpointLoader,
                                            load_from_local)
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
    ours = CheckpointLoader._get_checkpoint_loader('x.pth')
    assert ours is not load_from_local
    with pytest.raises(CheckpointError, match='refusing to load'):
        ours(str(_crafted(tmp_path / 'a.pth', tmp_path / 'kept-out')), 'cpu')
    assert not (tmp_path / 'kept-out').exists()
    target = tmp_path / 'created'
    load_from_local(str(_crafted(tmp_path / 'b.pth', target)), 'cpu')
    assert target.exists()


# --------------------------------------------------------------------------
# Data and configs the paths need (tiny, made once per module)
# --------------------------------------------------------------------------
@pytest.fixture(scope='module')
def det_config(tmp_path_factory):
    from det_data import make_coco_instances, write_det_config
    root = tmp_path_factory.mktemp('det')
    make_coco_instances(str(root / 'data'))
    return write_det_config(str(root / 'det.py'), str(root / 'data'))


@pytest.fixture(scope='module')
def seg_config(tmp_path_factory):
    from mmnextvit.bundled_data.seg_shapes import SegShapesConfig, generate
    root = tmp_path_factory.mktemp('seg')
    generate(str(root / 'data'), SegShapesConfig(num_train=1, num_val=1),
             progress=False)
    path = root / 'seg.py'
    base = osp.join(REPO, 'configs', 'bundled_data',
                    'nextvit_s_seg-shapes-cpu.py')
    path.write_text(
        f'_base_ = {base!r}\n'
        f"_root = {str(root / 'data')!r}\n"
        'train_dataloader = dict(dataset=dict(data_root=_root))\n'
        'val_dataloader = dict(dataset=dict(data_root=_root))\n'
        'test_dataloader = val_dataloader\n')
    return str(path)


# --------------------------------------------------------------------------
# Our tools (in-process: their main() is what the command line runs)
# --------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def fresh_loggers():
    """The tools run in this process; an MMLogger made by an earlier test
    still writes to that test's (closed) captured stderr, which prints a
    '--- Logging error ---' traceback into this test's output."""
    from mmengine.logging import MMLogger
    MMLogger._instance_dict.clear()
    yield
    MMLogger._instance_dict.clear()


def _tool_main(name):
    return runpy.run_path(osp.join(REPO, 'tools', name),
                          run_name='mmnextvit_tool')['main']


@pytest.mark.parametrize('kind', ['crafted', 'truncated', 'foreign'])
def test_our_tools_refuse(bad_files, det_config, tmp_path, capsys, kind):
    files, _ = bad_files
    path, words = files[kind]
    work = tmp_path / 'work'
    calls = [
        ('test.py', [det_config, str(path)]),
        ('train.py', [det_config, '--resume', str(path)]),
    ]
    # --resume without a path, last_checkpoint naming the crafted file (a
    # file that is no whole torch.save archive is passed over: see
    # test_crash_resume.py).
    if kind == 'crafted':
        auto = tmp_path / 'auto'
        auto.mkdir()
        os.link(path, auto / 'iter_1.pth')
        (auto / 'last_checkpoint').write_text(str(auto / 'iter_1.pth'))
        calls.append(('train.py', [det_config, '--resume', '--work-dir',
                                   str(auto)]))
    for script, argv in calls:
        if '--work-dir' not in argv:
            argv = argv + ['--work-dir', str(work)]
        with pytest.raises(SystemExit) as info:
            _tool_main(script)(argv)
        assert info.value.code == 2
        assert_one_line_error(capsys.readouterr().err, *words)
    assert not work.exists()


# --------------------------------------------------------------------------
# mmdet / mmseg Python APIs (through mmengine's checkpoint loader)
# --------------------------------------------------------------------------
def _api_calls(det_config, seg_config):
    from mmdet.apis import DetInferencer, init_detector
    from mmseg.apis import MMSegInferencer, init_model
    return {
        'init_detector':
        lambda path: init_detector(det_config, str(path), device='cpu'),
        'init_model':
        lambda path: init_model(seg_config, str(path), device='cpu'),
        'DetInferencer':
        lambda path: DetInferencer(det_config, str(path), device='cpu',
                                   show_progress=False),
        'MMSegInferencer':
        lambda path: MMSegInferencer(seg_config, str(path), device='cpu'),
    }


@pytest.mark.parametrize(
    'api', ['init_detector', 'init_model', 'DetInferencer',
            'MMSegInferencer'])
def test_apis_refuse(bad_files, det_config, seg_config, api):
    files, _ = bad_files
    call = _api_calls(det_config, seg_config)[api]
    for kind, (path, words) in files.items():
        with pytest.raises(CheckpointError) as info:
            call(path)
        message = str(info.value)
        assert len(message.splitlines()) == 1, message
        for word in words:
            assert word in message, (kind, message)


def test_apis_load_our_checkpoints(det_config, tmp_path):
    """Our own runner checkpoints (message hub, numpy, optimizer state)
    still load through the same loader."""
    from mmdet.apis import init_detector
    from mmengine.logging import HistoryBuffer, MessageHub
    import numpy as np
    model = init_detector(det_config, device='cpu')
    hub = MessageHub.get_instance('reliability-test')
    hub.update_scalar('train/loss', np.float64(0.5))
    path = tmp_path / 'runner.pth'
    torch.save({'meta': {'iter': 3, 'seed': np.int64(7)},
                'state_dict': model.state_dict(),
                'message_hub': hub.state_dict(),
                'optimizer': {'state': {}, 'param_groups': []}}, str(path))
    loaded = init_detector(det_config, str(path), device='cpu')
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert isinstance(hub.get_scalar('train/loss'), HistoryBuffer)


# --------------------------------------------------------------------------
# The stock test.py of mmdet and mmseg (subprocesses, as a user runs them)
# --------------------------------------------------------------------------
@pytest.mark.parametrize('task', ['mmdet', 'mmseg'])
def test_stock_test_py_refuses(bad_files, det_config, seg_config, tmp_path,
                               task):
    files, _ = bad_files
    path, words = files['crafted']
    config = det_config if task == 'mmdet' else seg_config
    proc = run([sys.executable, STOCK_TEST[task], config, path,
                '--work-dir', tmp_path / 'work'],
               TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD='1')
    assert proc.returncode != 0
    # mmengine's traceback ends in our one-line error.
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(
        'mmnextvit.engine.safe_loading.CheckpointError: '), last
    for word in words:
        assert word in last, last
