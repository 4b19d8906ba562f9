"""One test per item of mmnextvit.compat.torch, on whichever torch runs the
suite (``make test``: 2.13, ``make test-oldest``: 2.1): the side each item
takes here is the one this torch needs, and the other side would fail
here. A torch release that changes an API makes the test of its item fail,
so that the item is revisited rather than silently kept."""
import collections
import os.path as osp
import pickle
import warnings

import pytest
import torch
from mmengine.logging import HistoryBuffer

from mmnextvit.compat import torch as compat
from mmnextvit.compat.mmengine import mmengine_checkpoint_types


def test_version_is_read():
    assert compat.TORCH_VERSION[:2] == tuple(
        int(part) for part in torch.__version__.split('.')[:2])
    assert compat.torch_at_least(2, 1)
    assert compat._release('2.1.0+cu121') == (2, 1, 0)
    assert compat._release('2.13.0a0+git1234') == (2, 13, 0)


# ---------------------------------------------------------------- item 1
def test_autocast_state_by_device():
    if compat.autocast_by_device_type():
        assert torch.is_autocast_enabled('cpu') is False
    else:  # torch < 2.4: the device argument does not exist
        with pytest.raises(TypeError):
            torch.is_autocast_enabled('cpu')
    assert compat.autocast_dtype('cpu') is None
    assert compat.autocast_dtype('cuda') is None
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert compat.autocast_dtype('cpu') == torch.bfloat16
        assert compat.autocast_dtype('cuda') is None
        assert compat.autocast_dtype('meta') is None
    assert compat.autocast_dtype('cpu') is None


# ---------------------------------------------------------------- item 2
class _CreatesFile:
    """Unpickles as ``open(path, 'w')``: a file appears if it runs."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, 'w'))


def _mmengine_checkpoint(path):
    import numpy as np
    buffer = HistoryBuffer()
    buffer.update(2.0)
    torch.save(
        {
            'state_dict': {'w': torch.arange(3.)},
            'message_hub': {'log_scalars': {'loss': buffer}},
            'meta': {
                'seed': np.int64(7),
                'epoch': np.float32(1.0),
                'dtype': torch.bfloat16,
                'seen': collections.Counter(a=2)
            },
        }, path)


def test_weights_only_path_this_torch_needs(tmp_path):
    """torch >= 2.6 reads mmengine's types only once they are allowlisted
    (its weights-only default refuses them); older torch cannot allowlist
    them at all (``add_safe_globals`` from 2.4, ``(object, name)`` pairs
    from 2.6), so the restricted unpickler is the only weights-only path
    there."""
    path = str(tmp_path / 'ckpt.pth')
    _mmengine_checkpoint(path)
    if compat.torch_weights_only_takes_allowlist():
        saved = torch.serialization.get_safe_globals()
        torch.serialization.clear_safe_globals()
        try:
            with pytest.raises(Exception, match='HistoryBuffer'):
                torch.load(path, weights_only=True)
        finally:
            torch.serialization.add_safe_globals(saved)
    else:
        # Nothing was allowlisted, and torch's own unpickler refuses them.
        with pytest.raises(Exception):
            torch.load(path, weights_only=True)
    loaded = compat.load_weights_only(path, 'cpu',
                                      mmengine_checkpoint_types())
    assert loaded['state_dict']['w'].tolist() == [0., 1., 2.]
    assert loaded['message_hub']['log_scalars']['loss'].current() == 2.0
    assert loaded['meta']['seed'] == 7
    assert loaded['meta']['dtype'] is torch.bfloat16
    assert loaded['meta']['seen'] == collections.Counter(a=2)


@pytest.mark.parametrize('payload', ['nested', 'top'])
def test_no_file_runs_code(tmp_path, payload):
    """A pickle that would create a file is refused on every torch, with
    the global it names in torch's words, and the file never appears."""
    target = tmp_path / 'PWNED'
    obj = _CreatesFile(target)
    path = str(tmp_path / 'crafted.pth')
    torch.save({'meta': {'x': obj}} if payload == 'nested' else obj, path)
    with pytest.raises(pickle.UnpicklingError,
                       match=r'(?s)Weights only load failed.*GLOBAL io\.open'):
        compat.load_weights_only(path, 'cpu', mmengine_checkpoint_types())
    assert not target.exists()
    # Control: loaded without restriction it does run.
    torch.load(path, weights_only=False)
    assert target.exists()


def test_restricted_unpickler_refuses_classes_and_reduce(tmp_path):
    """The restricted path (torch < 2.6) refuses any global not in torch's
    own weights-only list or the caller's, classes included."""
    unpickler = type('U', (compat.RestrictedUnpickler, ),
                     {'allowed': {'collections.OrderedDict': dict}})
    import io
    data = pickle.dumps(HistoryBuffer())
    with pytest.raises(pickle.UnpicklingError, match='GLOBAL mmengine'):
        unpickler(io.BytesIO(data)).load()
    data = pickle.dumps(osp.join)
    with pytest.raises(pickle.UnpicklingError, match='GLOBAL posixpath.join'):
        unpickler(io.BytesIO(data)).load()


# ---------------------------------------------------------------- item 3
def test_is_compiling():
    assert hasattr(torch.compiler, 'is_compiling') == compat.torch_at_least(
        2, 3)
    assert compat.is_compiling() is False
    seen = []

    def probe(x):
        seen.append(compat.is_compiling())
        return x + 1

    torch._dynamo.reset()
    torch.compile(probe, backend='eager')(torch.zeros(2))
    assert seen == [True]


# ---------------------------------------------------------------- item 4
def test_onnx_export_through_torchscript(tmp_path):
    """``dynamo=False`` where torch.onnx.export takes it (and defaults to
    True from 2.9, which would need onnxscript and skip mmdeploy's
    rewriters); nothing where it does not (a TypeError there)."""
    import inspect
    parameters = inspect.signature(torch.onnx.export).parameters
    if compat.onnx_export_takes_dynamo():
        assert 'dynamo' in parameters
    else:
        assert 'dynamo' not in parameters
        with pytest.raises(TypeError):
            torch.onnx.export(torch.nn.ReLU(), (torch.zeros(1), ),
                              str(tmp_path / 'x.onnx'), dynamo=False)
    path = str(tmp_path / 'relu.onnx')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        compat.onnx_export(torch.nn.ReLU(), (torch.zeros(1, 2), ), path,
                           opset_version=11)
    import onnx
    model = onnx.load(path)
    assert [node.op_type for node in model.graph.node] == ['Relu']
