"""One test per item of mmnextvit.compat.mmengine: each fails when an
mmengine (or torch) release changes what the item relies on, or makes it
unnecessary, so that the override is revisited rather than silently kept."""
import contextlib
import inspect
import os.path as osp
import pickle

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import CheckpointHook
from mmengine.logging import HistoryBuffer
from mmengine.runner import Runner, checkpoint as mmengine_checkpoint

from mmnextvit.compat import mmengine as compat
from mmnextvit.compat.torch import (load_weights_only,
                                    torch_weights_only_takes_allowlist)
from mmnextvit.engine.safe_loading import load_local_checkpoint

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _mmengine_like_checkpoint(path):
    buffer = HistoryBuffer()
    buffer.update(1.5)
    torch.save({'message_hub': {'loss': buffer}, 'meta': {
        'seed': np.int64(3), 'mean': np.array([1.0, 2.0])}}, path)


@contextlib.contextmanager
def _no_process_wide_allowlist():
    """torch >= 2.6: torch's allowlist emptied for the block (the package's
    import fills it); nothing to empty before."""
    if not torch_weights_only_takes_allowlist():
        yield
        return
    ours = torch.serialization.get_safe_globals()
    torch.serialization.clear_safe_globals()
    try:
        yield
    finally:
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(ours)


@pytest.mark.skipif(not torch_weights_only_takes_allowlist(),
                    reason='torch < 2.6 has no (object, name) allowlist; '
                    'test_compat_torch.py covers the restricted unpickler')
def test_safe_globals_are_still_needed_and_enough(tmp_path):
    """torch >= 2.6: its default allowlist still refuses what mmengine
    writes into a checkpoint; ours lets it through with weights_only on."""
    path = str(tmp_path / 'hub.pth')
    _mmengine_like_checkpoint(path)
    with _no_process_wide_allowlist(), \
            pytest.raises(Exception, match='HistoryBuffer'):
        torch.load(path, weights_only=True)
    compat.allow_mmengine_checkpoint_types()
    loaded = torch.load(path, weights_only=True)
    assert loaded['message_hub']['loss'].current() == 1.5
    assert loaded['meta']['mean'].tolist() == [1.0, 2.0]


@pytest.mark.skipif(torch_weights_only_takes_allowlist(),
                    reason='torch >= 2.6 loads weights-only by default')
def test_old_torch_loads_everything_by_default(tmp_path):
    """torch < 2.6: a plain torch.load (what mmengine's own loader calls)
    runs whatever a file names, so mmengine needs no allowlist there, and
    :func:`allow_mmengine_checkpoint_types` adds none (add_safe_globals
    does not exist before 2.4)."""
    path = str(tmp_path / 'hub.pth')
    _mmengine_like_checkpoint(path)
    assert torch.load(path)['message_hub']['loss'].current() == 1.5
    compat.allow_mmengine_checkpoint_types()  # a no-op, not an error


def test_mmengine_types_load_weights_only_on_every_torch(tmp_path):
    """The types of :func:`mmengine_checkpoint_types` are what an mmengine
    checkpoint needs, through the path this torch takes."""
    path = str(tmp_path / 'hub.pth')
    _mmengine_like_checkpoint(path)
    with _no_process_wide_allowlist(), \
            pytest.raises(pickle.UnpicklingError, match='GLOBAL'):
        load_weights_only(path, 'cpu', [])
    loaded = load_weights_only(path, 'cpu', compat.mmengine_checkpoint_types())
    assert loaded['message_hub']['loss'].mean() == 1.5
    assert loaded['meta']['seed'] == 3


def test_checkpoint_loader_is_installed_and_still_needed():
    """mmengine's own local loader still leaves weights_only to torch's
    default (which an environment variable turns off); ours is the one
    registered for local paths."""
    source = inspect.getsource(mmengine_checkpoint.load_from_local)
    assert 'torch.load(' in source and 'weights_only' not in source
    loader = mmengine_checkpoint.CheckpointLoader._get_checkpoint_loader(
        'some/local/file.pth')
    assert loader is load_local_checkpoint


def test_config_prefix_is_installed_and_still_needed():
    """mmengine still resolves pkg:: paths through the private
    Config._get_cfg_path from a table without this package, and our
    wrapper gives mmnextvit:: paths no scope."""
    from mmengine.config.utils import MODULE2PACKAGE
    assert 'mmnextvit' not in MODULE2PACKAGE
    signature = inspect.signature(Config._get_cfg_path)
    assert list(signature.parameters) == ['cfg_path', 'filename']
    assert getattr(Config._get_cfg_path, 'handles_mmnextvit', False)
    path, scope = Config._get_cfg_path('mmnextvit::mask_rcnn/nextvit_s_1x.py',
                                       'downstream.py')
    assert scope is None
    assert osp.samefile(
        path, osp.join(REPO, 'configs', 'mask_rcnn', 'nextvit_s_1x.py'))
    compat.install_config_prefix()  # idempotent: no second wrapper
    assert Config._get_cfg_path('mmnextvit::mask_rcnn/nextvit_s_1x.py',
                                'x.py')[0] == path


def _package_config_paths():
    """Every ``pkg::`` path this repository's configs inherit from another
    package."""
    import glob
    import re
    found = set()
    for path in glob.glob(osp.join(REPO, 'configs', '**', '*.py'),
                          recursive=True):
        with open(path) as f:
            found.update(re.findall(r"'((?:mmdet|mmseg)::[^']+)'", f.read()))
    return sorted(found)


def test_shipped_configs_resolve_as_mmengine_does_without_its_metafiles(
        monkeypatch):
    """For every mmdet:: / mmseg:: path of our configs, mmengine's own
    Config._get_cfg_path still parses the package's metafiles (the work the
    wrapper skips) and still ends at the shipped file the wrapper gives,
    with the same scope."""
    from mmengine.config import utils as config_utils
    paths = _package_config_paths()
    assert len(paths) >= 6, paths
    original = Config._get_cfg_path.original
    parsed = []
    metainfo = config_utils._get_cfg_metainfo

    def counted(*args):
        parsed.append(args)
        return metainfo(*args)

    monkeypatch.setattr(config_utils, '_get_cfg_metainfo', counted)
    for cfg_path in paths:
        theirs = original(cfg_path, 'x.py')
        del parsed[:]
        ours = Config._get_cfg_path(cfg_path, 'x.py')
        assert not parsed, cfg_path
        assert ours[1] == theirs[1] == cfg_path.partition('::')[0]
        assert osp.samefile(ours[0], theirs[0]), (cfg_path, ours, theirs)
    assert len(parsed) == 0
    original(paths[0], 'x.py')
    assert len(parsed) == 1  # mmengine still parses them
    # Whatever the package does not ship stays mmengine's to report.
    assert compat.shipped_config('mmdet::_base_/no_such.py') is None
    with pytest.raises(FileNotFoundError):
        Config._get_cfg_path('mmdet::_base_/no_such.py', 'x.py')


def test_config_formatting_is_memoized_and_still_needed(monkeypatch):
    """mmengine still formats the config with yapf on every read of
    pretty_text; with the memo an unchanged config is formatted once, a
    changed one again, and the text is mmengine's own."""
    from mmengine.config import config as config_module
    assert getattr(config_module.FormatCode, 'memoized', False)
    yapf = config_module.FormatCode.original
    calls = []

    def counted(*args, **kwargs):
        calls.append(args[0])
        return yapf(*args, **kwargs)

    cfg = Config(dict(model=dict(type='MaskRCNN', depth=50), lr=0.01))
    monkeypatch.setattr(config_module, 'FormatCode', counted)
    plain = cfg.pretty_text
    assert cfg.pretty_text == plain and len(calls) == 2
    compat.memoize_config_formatting()  # over the counter
    del calls[:]
    assert cfg.pretty_text == plain and cfg.pretty_text == plain
    assert len(calls) == 1
    cfg.lr = 0.02
    assert 'lr = 0.02' in cfg.pretty_text and len(calls) == 2
    compat.memoize_config_formatting()  # idempotent: no second memo
    assert config_module.FormatCode.original is counted


def test_private_hook_and_runner_api_is_still_there():
    """SafeCheckpointHook overrides CheckpointHook._save_checkpoint_with_step
    and reads Runner._resume and Runner._train_loop."""
    method = CheckpointHook._save_checkpoint_with_step
    assert list(inspect.signature(method).parameters) == [
        'self', 'runner', 'step', 'meta'
    ]
    # Every periodic save goes through it (by epoch and by iteration).
    assert '_save_checkpoint_with_step' in inspect.getsource(
        CheckpointHook._save_checkpoint)
    init = inspect.getsource(Runner.__init__)
    assert 'self._resume = resume' in init
    assert 'self._train_loop = train_cfg' in init
    assert 'self._train_loop = self.build_train_loop(' in inspect.getsource(
        Runner.train_loop.fget)

    class FakeRunner:
        _resume = True
        _train_loop = dict(type='IterBasedTrainLoop')

    assert compat.is_resuming(FakeRunner())
    assert compat.built_train_loop(FakeRunner()) is None
    FakeRunner._train_loop = loop = object()
    assert compat.built_train_loop(FakeRunner()) is loop


def test_pkg_resources_warning_is_still_raised_and_kept_from_tools():
    """mmengine still imports pkg_resources (and setuptools still warns on
    it); a tool's one-line error comes without that warning before it."""
    import subprocess
    import sys

    from mmengine.utils import package_utils
    assert 'import pkg_resources' in inspect.getsource(package_utils)
    warned = subprocess.run(
        [sys.executable, '-W', 'always', '-c', 'import pkg_resources'],
        capture_output=True, text=True)
    assert compat.PKG_RESOURCES_WARNING in warned.stderr
    # A config built on mmdet:: bases makes mmengine look up mmdet.
    proc = subprocess.run(
        [sys.executable, 'tools/test.py', 'configs/mask_rcnn/nextvit_s_1x.py',
         'no_such.pth'], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('test.py: error: '), lines
