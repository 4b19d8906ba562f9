"""Every weight layout a user brings loads by content, checks every tensor,
and never runs code from the file."""
import json
import os.path as osp
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import DATA, seeded_state, upstream_keys
from mmengine.logging import MessageHub
from safetensors.torch import save_file

from mmnextvit.models import NextViT
from mmnextvit.engine.safe_loading import CheckpointError, read_checkpoint
from mmnextvit.models.checkpoint_layouts import (timm_to_upstream,
                                                 upstream_to_timm)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONVERTER = osp.join(ROOT, 'tools', 'model_converters', 'nextvit2mmengine.py')
DEPTHS = {'small': (3, 4, 10, 3), 'base': (3, 4, 20, 3)}


def released_state(arch='small', seg=False):
    """The tensors of a released upstream file of ``arch``."""
    return seeded_state(upstream_keys(NextViT(arch=arch, with_extra_norm=seg)))


def timm_layout_pairs():
    """``[(timm key, upstream key, shape)]`` of Next-ViT-S as timm itself
    pairs them (tests/data/make_timm_layout.py): independent of
    :mod:`mmnextvit.models.checkpoint_layouts`."""
    with open(osp.join(DATA, 'timm_nextvit_small_layout.json')) as f:
        return [tuple(pair) for pair in json.load(f)['pairs']]


def as_timm(state, arch):
    """The timm hub layout of an upstream-layout state dict (contiguous,
    as safetensors needs): renamed by timm's own pairing for Next-ViT-S,
    by this package's converter for the other variants."""
    if arch == 'small':
        names = {up: timm for timm, up, _ in timm_layout_pairs()}
        timm = {names[key]: value for key, value in state.items()}
    else:
        timm = upstream_to_timm(state, DEPTHS[arch])
    return {k: v.contiguous() for k, v in timm.items()}


def mmengine_runner_file(path, model_state):
    """A checkpoint shaped like the ones mmengine's Runner writes."""
    hub = MessageHub.get_instance('test_weights')
    hub.update_scalar('train/loss', 1.25)
    hub.update_info('iter', 7)
    torch.save(
        dict(
            meta=dict(
                epoch=1, iter=7, seed=np.int64(3), mmengine_version='0.10.7',
                dataset_meta=dict(classes=('a', 'b'))),
            state_dict=model_state,
            message_hub=hub.state_dict(),
            optimizer=dict(state={}, param_groups=[dict(lr=np.float64(1e-4))]),
        ), path)


def write(tmp_path, name, layout, state, arch='small'):
    """Save ``state`` (upstream layout, released keys) as a user's file."""
    path = str(tmp_path / name)
    if layout == 'upstream-imagenet':
        torch.save(
            dict(model=state, optimizer={}, epoch=299,
                 args=__import__('argparse').Namespace(model='nextvit_small')),
            path)
    elif layout == 'upstream-det':
        model = {f'backbone.{k}': v for k, v in state.items()}
        model['neck.lateral_convs.0.conv.weight'] = torch.zeros(256, 96, 1, 1)
        torch.save(dict(state_dict=model, meta=dict(mmdet_version='2.23.0')),
                   path)
    elif layout == 'timm-safetensors':
        save_file(as_timm(state, arch), path)
    elif layout == 'timm-pth':
        torch.save(as_timm(state, arch), path)
    elif layout == 'upstream-flat':
        torch.save(state, path)
    elif layout == 'mmengine-runner':
        mmengine_runner_file(
            path, {f'backbone.{k}': v for k, v in state.items()})
    else:
        raise AssertionError(layout)
    return path


def pretrained(path, **kwargs):
    model = NextViT(
        init_cfg=dict(type='Pretrained', checkpoint=path), **kwargs)
    model.init_weights()
    return model


LAYOUTS = ['upstream-imagenet', 'upstream-det', 'timm-safetensors',
           'timm-pth', 'upstream-flat', 'mmengine-runner']


@pytest.mark.parametrize('layout', LAYOUTS)
def test_each_layout_loads_every_tensor(tmp_path, layout):
    state = released_state()
    path = write(tmp_path, 'weights.bin', layout, state)
    model = pretrained(path)
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


@pytest.fixture
def log_lines(monkeypatch):
    lines = []
    monkeypatch.setattr('mmnextvit.models.checkpoint_layouts.print_log',
                        lambda msg, **kwargs: lines.extend(msg.splitlines()))
    return lines


def test_load_reports_skipped_keys_in_one_line(tmp_path, log_lines):
    path = write(tmp_path, 'in1k.pth', 'upstream-imagenet', released_state())
    pretrained(path)
    lines = log_lines
    assert len(lines) == 1
    assert 'upstream-imagenet' in lines[0]
    assert 'skipped 7 unused' in lines[0]
    assert 'proj_head.0.*' in lines[0] and 'norm.*' in lines[0]


def test_segmentation_mode_from_imagenet_keeps_extra_norms_initial(tmp_path):
    state = released_state()
    path = write(tmp_path, 'in1k.pth', 'upstream-imagenet', state)
    model = pretrained(path, with_extra_norm=True)
    # The classifier norm becomes the stage-4 norm; the stage norms start
    # as identities of unit scale.
    assert torch.equal(model.norm.weight, state['norm.weight'])
    for norm in model.extra_norm_list:
        assert torch.equal(norm.weight, torch.ones_like(norm.weight))
        assert torch.equal(norm.bias, torch.zeros_like(norm.bias))


def test_segmentation_checkpoint_loads_all_but_unused_norm(tmp_path,
                                                           log_lines):
    state = released_state(seg=True)
    assert 'extra_norm_list.3.weight' in state
    path = write(tmp_path, 'upernet.pth', 'upstream-det', state)
    model = pretrained(path, with_extra_norm=True)
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert len(log_lines) == 1 and 'extra_norm_list.3.*' in log_lines[0]


@pytest.mark.parametrize('file_arch, model_arch',
                         [('base', 'small'), ('small', 'base')])
def test_other_variant_is_refused_and_nothing_loads(tmp_path, file_arch,
                                                    model_arch):
    path = write(tmp_path, 'w.pth', 'timm-safetensors',
                 released_state(file_arch), arch=file_arch)
    model = NextViT(
        arch=model_arch, init_cfg=dict(type='Pretrained', checkpoint=path))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError) as info:
        model.init_weights()
    message = str(info.value)
    assert f'Next-ViT-{model_arch}' in message
    assert f'Next-ViT-{file_arch} weights' in message
    assert re.search(r'\d+ missing, \d+ unexpected and \d+ mis-shaped',
                     message)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_another_model_is_refused(tmp_path):
    path = str(tmp_path / 'resnet.pth')
    torch.save({'conv1.weight': torch.zeros(64, 3, 7, 7),
                'fc.weight': torch.zeros(10, 64)}, path)
    with pytest.raises(CheckpointError, match=r'465 missing, 2 unexpected'):
        pretrained(path)


def test_partial_file_is_refused(tmp_path):
    state = released_state()
    del state['features.5.mlp.conv1.weight']
    path = write(tmp_path, 'partial.pth', 'upstream-flat', state)
    with pytest.raises(CheckpointError, match='features.5.mlp.conv1.weight'):
        pretrained(path)


def test_file_that_would_run_code_is_refused(tmp_path):
    target = tmp_path / 'created_by_unpickling'

    class Payload:

        def __reduce__(self):
            return (pathlib.Path.touch, (target, ))

    path = str(tmp_path / 'evil.pth')
    torch.save({'state_dict': {'x': torch.zeros(1)}, 'meta': Payload()}, path)
    with pytest.raises(CheckpointError, match='refusing to load'):
        pretrained(path)
    assert not target.exists()


@pytest.mark.parametrize('content', [b'not a checkpoint at all\n', None])
def test_truncated_or_foreign_file(tmp_path, content):
    path = str(tmp_path / 'bad.pth')
    if content is None:
        write(tmp_path, 'good.pth', 'upstream-flat', released_state())
        data = (tmp_path / 'good.pth').read_bytes()
        content = data[:len(data) // 2]
    pathlib.Path(path).write_bytes(content)
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(path)
    assert len(str(info.value).splitlines()) == 1
    assert path in str(info.value)


def test_missing_file_is_named(tmp_path):
    path = str(tmp_path / 'nowhere.pth')
    with pytest.raises(FileNotFoundError, match=re.escape(path)):
        pretrained(path)


# ---------------------------------------------------------------------------
# tools/model_converters/nextvit2mmengine.py
# ---------------------------------------------------------------------------
def run_converter(*args):
    return subprocess.run([sys.executable, CONVERTER, *args],
                          capture_output=True, text=True, cwd=ROOT)


def test_converter_help():
    result = run_converter('--help')
    assert result.returncode == 0
    assert 'src' in result.stdout and '--arch' in result.stdout


@pytest.mark.parametrize('layout', ['timm-safetensors', 'upstream-imagenet',
                                    'upstream-det'])
def test_converter_writes_a_clean_backbone_checkpoint(tmp_path, layout):
    state = released_state()
    src = write(tmp_path, 'src.bin', layout, state)
    dst = str(tmp_path / 'out' / 'nextvit_small.pth')
    result = run_converter(src, dst)
    assert result.returncode == 0, result.stderr
    converted = torch.load(dst, weights_only=True)
    assert set(converted) == {'state_dict', 'meta'}
    assert converted['meta']['arch'] == 'small'
    assert not any(k.startswith('proj_head') for k in converted['state_dict'])
    # It loads into both modes with the same tensors.
    for seg in (False, True):
        model = pretrained(dst, with_extra_norm=seg)
        for key, value in model.state_dict().items():
            if not key.startswith('extra_norm_list'):
                assert torch.equal(value, state[key]), key


def test_converter_rejects_unknown_file_without_writing(tmp_path):
    src = str(tmp_path / 'other.pth')
    torch.save({'layer.weight': torch.zeros(2, 2)}, src)
    dst = tmp_path / 'out.pth'
    result = run_converter(src, str(dst))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error:')
    assert src in lines[0] and '--arch' in lines[0]
    assert not dst.exists() and list(tmp_path.iterdir()) == [pathlib.Path(src)]


def test_mmengine_load_checkpoint_reads_runner_files_with_weights_only(
        tmp_path):
    """mmengine's own loader (used by --resume, test.py, init_detector)
    relies on torch's weights_only default; importing mmnextvit makes it
    read runner checkpoints while a file with other objects stays refused."""
    from mmengine.runner import CheckpointLoader
    path = str(tmp_path / 'epoch_1.pth')
    mmengine_runner_file(path, {'w': torch.ones(2)})
    loaded = CheckpointLoader.load_checkpoint(path, map_location='cpu')
    assert loaded['message_hub']['log_scalars']['train/loss'].mean() == 1.25
    target = tmp_path / 'created'

    class Payload:

        def __reduce__(self):
            return (pathlib.Path.touch, (target, ))

    evil = str(tmp_path / 'evil.pth')
    torch.save({'state_dict': {'w': torch.ones(2)}, 'meta': Payload()}, evil)
    # mmnextvit's loader (installed in mmengine on import) names the object.
    with pytest.raises(CheckpointError, match='refusing to load.*pathlib'):
        CheckpointLoader.load_checkpoint(evil, map_location='cpu')
    assert not target.exists()


def test_timm_names_of_upstream_keys():
    """Next-ViT-S has 3, 4, 10 and 3 blocks per stage: block 6 is stage 2's
    fourth (index 3), block 17 stage 3's eighth; names as timm's
    nextvit_small state dict has them."""
    state = {k: torch.zeros(1) for k in (
        'stem.0.conv.weight', 'features.2.mlp.conv2.weight',
        'features.3.patch_embed.conv.weight', 'features.6.mlp.conv1.weight',
        'features.16.e_mhsa.q.weight', 'features.19.norm2.running_var',
        'norm.weight', 'proj_head.0.weight')}
    assert list(upstream_to_timm(state, DEPTHS['small'])) == [
        'stem.0.conv.weight', 'stages.0.blocks.2.mlp.fc2.weight',
        'stages.1.blocks.0.patch_embed.conv.weight',
        'stages.1.blocks.3.mlp.fc1.weight',
        'stages.2.blocks.9.e_mhsa.q.weight',
        'stages.3.blocks.2.norm2.running_var', 'norm.weight',
        'head.fc.weight']


def test_converter_names_every_key_as_timm_does():
    """Each of Next-ViT-S's 472 upstream keys gets the timm name timm's own
    conversion gives its tensor, and back."""
    pairs = timm_layout_pairs()
    assert len(pairs) == 472
    state = {up: torch.zeros(shape) for _, up, shape in pairs}
    assert list(upstream_to_timm(state, DEPTHS['small'])) == [
        timm for timm, _, _ in pairs]
    timm_state = {timm: torch.zeros(shape) for timm, _, shape in pairs}
    assert list(timm_to_upstream(timm_state)) == [up for _, up, _ in pairs]


def test_timm_renaming_round_trips_every_key():
    state = released_state('base')
    timm = upstream_to_timm(state, DEPTHS['base'])
    assert len(timm) == len(state)
    back = timm_to_upstream(timm)
    assert list(back) == list(state)
    assert all(back[k] is state[k] for k in state)


def test_timm_renaming_refuses_too_few_depths():
    state = {'features.29.mlp.conv1.weight': torch.zeros(1)}
    with pytest.raises(CheckpointError, match='past the 20 blocks'):
        upstream_to_timm(state, DEPTHS['small'])


def _timm_importable():
    try:
        import timm  # noqa: F401
    except Exception:  # timm or its torchvision missing or broken
        return False
    return True


@pytest.mark.skipif(
    not _timm_importable(),
    reason='timm needs torchvision, which cannot be installed beside the '
    'CPU torch 2.13 build of today\'s stack; make test-oldest runs this '
    '(timm 1.0.31, requirements/comparison.txt)')
def test_timm_nextvit_with_our_weights_gives_our_features():
    """timm's own nextvit_small, given this package's seeded Next-ViT-S
    weights renamed to its layout, computes our features (modules and each
    one's folded form; the GPU benchmark's parity check, on the CPU)."""
    from mmnextvit.analysis.gpu_benchmark import timm_parity
    parity = timm_parity(torch.device('cpu'))
    assert parity['modules'] < 1e-5, parity
    assert parity['deployed'] < 1e-5, parity
    assert parity['shapes'] == [[2, 96, 56, 56], [2, 256, 28, 28],
                                [2, 512, 14, 14], [2, 1024, 7, 7]]
