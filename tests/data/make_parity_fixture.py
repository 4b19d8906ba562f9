"""Regenerate ``nextvit_small_parity.pt``, the upstream Next-ViT-S outputs
the backbone is tested against, from the upstream code itself.

    git clone https://github.com/bytedance/Next-ViT
    git -C Next-ViT checkout d5936ea
    python tests/data/make_parity_fixture.py Next-ViT          # compare
    python tests/data/make_parity_fixture.py Next-ViT --write  # overwrite

The source is ``segmentation/nextvit.py`` at commit d5936ea ("use
checkpointing to save memory"), for both modes: ``with_extra_norm=False``
(detection) and ``True`` (segmentation). Not the repository's last commit:
the next one, 42bc7b8, removed ``self.norm`` while the forward still calls
it with ``with_extra_norm=True``, so segmentation crashes from there on; the
released models were trained before it. At d5936ea ``detection/nextvit.py``
builds the same network (it differs in the registry it imports, the
drop-path rate and a strict weight load), so one file serves both modes.

Everything in the fixture follows from the upstream file and this folder:

- weights: ``seeded_state.py`` over the upstream state dict's own key list,
  stored as ``keys`` (472 tensors for detection, 492 for segmentation);
- input: ``torch.manual_seed(0)`` then ``torch.randn(1, 3, 128, 160)``;
- features: the four stage outputs of the upstream model in eval mode.

Only torch is needed. The upstream file's imports of mmseg 0.x (a backbone
registry, a logger), timm (``DropPath``, ``trunc_normal_``) and einops
(``rearrange``) are stood in for by the few lines they do here, exact in
eval mode: drop path is the identity there and the seeded weights replace
the initialisation. The features come out the same on every x86-64 CPU
torch runs on to about 1e-6 relative; the tests allow 1e-5.
"""
import argparse
import importlib.util
import os.path as osp
import re
import sys
import types

import torch
from torch import nn

HERE = osp.dirname(osp.abspath(__file__))
FIXTURE = osp.join(HERE, 'nextvit_small_parity.pt')
COMMIT = 'd5936ea'
INPUT_SHAPE = (1, 3, 128, 160)
NOTE = (f'official Next-ViT (commit {COMMIT}, the parent of 42bc7b8 that '
        'removed self.norm; segmentation/nextvit.py for both modes) outputs '
        'on seeded weights; det = with_extra_norm False, seg = '
        'with_extra_norm True; eval mode; input 1x3x128x160 only; made by '
        'tests/data/make_parity_fixture.py')


def _rearrange(x, pattern, h=None):
    # The two patterns upstream's NTB uses.
    if pattern == 'b c h w -> b (h w) c':
        return x.flatten(2).transpose(1, 2)
    if pattern == 'b (h w) c -> b c h w':
        b, n, c = x.shape
        return x.transpose(1, 2).reshape(b, c, h, n // h)
    raise NotImplementedError(pattern)


class _DropPath(nn.Identity):
    """timm's DropPath in eval mode."""

    def __init__(self, *args, **kwargs):
        super().__init__()


def _stand_ins():
    registry = types.SimpleNamespace(register_module=lambda: (lambda c: c))
    modules = {
        'einops': dict(rearrange=_rearrange, repeat=None),
        'timm': {},
        'timm.models': {},
        'timm.models.layers': dict(
            DropPath=_DropPath, trunc_normal_=nn.init.trunc_normal_),
        'mmseg': {},
        'mmseg.models': {},
        'mmseg.models.builder': dict(BACKBONES=registry),
        'mmseg.utils': dict(get_root_logger=lambda: None),
    }
    stand_ins = {}
    for name, attrs in modules.items():
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        stand_ins[name] = module
    return stand_ins


def load_upstream(checkout: str):
    """Upstream's ``segmentation/nextvit.py`` (and its ``utils.py``) from a
    checkout, imported with the stand-ins; returns the module."""
    folder = osp.join(checkout, 'segmentation')
    source = osp.join(folder, 'nextvit.py')
    if not osp.isfile(source):
        sys.exit(f'error: {source} does not exist; pass a clone of '
                 'https://github.com/bytedance/Next-ViT')
    with open(source) as f:
        # Commented out, not deleted, by 42bc7b8.
        if not re.search(r'^\s*self\.norm = nn\.BatchNorm2d\(output_channel',
                         f.read(), re.M):
            sys.exit(f'error: {source} has no self.norm (a commit after '
                     f'{COMMIT}); run `git -C {checkout} checkout {COMMIT}`')
    saved = {name: sys.modules.get(name)
             for name in list(_stand_ins()) + ['utils']}
    sys.modules.update(_stand_ins())
    utils = importlib.util.spec_from_file_location(
        'utils', osp.join(folder, 'utils.py'))
    sys.modules['utils'] = importlib.util.module_from_spec(utils)
    utils.loader.exec_module(sys.modules['utils'])
    spec = importlib.util.spec_from_file_location('upstream_nextvit', source)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    finally:
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old
    return module


def make_fixture(upstream) -> dict:
    sys.path.insert(0, HERE)
    try:
        from seeded_state import seeded_state
    finally:
        sys.path.pop(0)
    torch.manual_seed(0)
    x = torch.randn(*INPUT_SHAPE)
    arches = {}
    for mode, extra_norm in (('det', False), ('seg', True)):
        model = upstream.nextvit_small(with_extra_norm=extra_norm)
        keys = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
        model.load_state_dict(seeded_state(keys), strict=True)
        model.eval()
        with torch.no_grad():
            feats = [f.clone() for f in model(x)]
        arches[mode] = dict(keys=keys, feats=[feats])
    return dict(note=NOTE, inputs=[x], arches=dict(small=arches))


def compare(made: dict, stored: dict) -> float:
    """Largest relative difference of the features; raises AssertionError
    when the inputs or the key lists differ."""
    assert torch.equal(made['inputs'][0], stored['inputs'][0]), 'inputs'
    worst = 0.
    for mode, new in made['arches']['small'].items():
        old = stored['arches']['small'][mode]
        assert [tuple(k) for k in new['keys']] == \
            [(k, tuple(s)) for k, s in old['keys']], f'{mode} keys'
        for a, b in zip(new['feats'][0], old['feats'][0]):
            assert a.shape == b.shape, f'{mode} feature shapes'
            worst = max(worst, ((a - b).abs().max() /
                                b.abs().max()).item())
    return worst


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('checkout', help='a clone of bytedance/Next-ViT at '
                        f'commit {COMMIT}')
    parser.add_argument('--fixture', default=FIXTURE,
                        help='the fixture to compare with or write')
    parser.add_argument('--write', action='store_true',
                        help='write the fixture instead of comparing')
    args = parser.parse_args(argv)
    made = make_fixture(load_upstream(args.checkout))
    if args.write:
        torch.save(made, args.fixture)
        print(f'wrote {args.fixture}')
        return
    stored = torch.load(args.fixture, weights_only=False)
    worst = compare(made, stored)
    print(f'{args.fixture}: same inputs and keys; features within '
          f'{worst:.1e} relative of the upstream code run here')
    if worst > 1e-5:
        sys.exit(1)


if __name__ == '__main__':
    main()
