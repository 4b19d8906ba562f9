"""Helpers shared by the tests: the upstream parity fixture's seeded
weights and the comparisons made against it."""
import importlib.util
import os.path as osp

import torch

DATA = osp.join(osp.dirname(__file__), 'data')


def _load_seeded_state():
    spec = importlib.util.spec_from_file_location(
        'seeded_state', osp.join(DATA, 'seeded_state.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.seeded_state


seeded_state = _load_seeded_state()


def upstream_keys(model):
    """(name, shape) of every tensor a released checkpoint would hold for
    ``model``'s variant: the backbone, the classifier norm and head, and in
    segmentation mode all four extra norms."""
    keys = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    names = {k for k, _ in keys}
    if model.with_extra_norm:
        for suffix, shape in (('weight', (1024, )), ('bias', (1024, )),
                              ('running_mean', (1024, )),
                              ('running_var', (1024, )),
                              ('num_batches_tracked', ())):
            keys.append((f'extra_norm_list.3.{suffix}', shape))
    else:
        for suffix, shape in (('weight', (1024, )), ('bias', (1024, )),
                              ('running_mean', (1024, )),
                              ('running_var', (1024, )),
                              ('num_batches_tracked', ())):
            keys.append((f'norm.{suffix}', shape))
    assert 'proj_head.0.weight' not in names
    keys += [('proj_head.0.weight', (1000, 1024)), ('proj_head.0.bias',
                                                    (1000, ))]
    return keys


def seeded_model(mode='det', arch='small'):
    """A backbone in eval mode holding the deterministic weights the fixture
    was made with, loaded through the same key matching a user's file goes
    through."""
    from mmnextvit.models import NextViT
    from mmnextvit.models.checkpoint_layouts import match_backbone_state
    model = NextViT(arch=arch, with_extra_norm=(mode == 'seg'))
    state = seeded_state(upstream_keys(model))
    to_load, _, kept = match_backbone_state(model.state_dict(), state)
    assert not kept
    model.load_state_dict(to_load, strict=True)
    return model.eval()


def rel_err(actual, expected):
    """Largest absolute difference relative to the largest magnitude."""
    return ((actual - expected).abs().max() /
            expected.abs().max().clamp_min(1e-12)).item()


def assert_matches_upstream(model, parity, mode, tolerance=1e-5):
    """Run ``model`` without autograd on the fixture inputs: the features
    match the upstream ones within ``tolerance`` relative, come back in the
    NCHW layout of the inputs, and the inputs are left as they were."""
    expected = parity['arches']['small'][mode]['feats']
    with torch.no_grad():
        for x, feats in zip(parity['inputs'], expected):
            before = x.clone()
            outs = model(x)
            assert torch.equal(x, before)
            assert len(outs) == len(feats)
            for out, ref in zip(outs, feats):
                assert out.shape == ref.shape
                assert out.is_contiguous()
                assert rel_err(out, ref) < tolerance


def assert_one_line_error(stderr, *fragments):
    """A tool's report of a bad input: stderr is exactly one line, the
    ``error:`` line, holding every fragment (no warning, log line or
    traceback beside it). Returns the line."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr[-3000:]
    line = lines[0]
    assert 'error:' in line, line
    for fragment in fragments:
        assert str(fragment) in line, line
    return line


def results_table(readme: str):
    """The rows of a config README's results table (the one whose header
    starts ``| backbone | pretrain``), each a dict from header to cell."""
    lines = readme.splitlines()
    start = next(i for i, line in enumerate(lines)
                 if line.startswith('| backbone | pretrain'))

    def cells(line):
        # A cell may hold an escaped bar (ckpt \| log).
        return [c.strip() for c in line.replace('\\|', '\x00').split('|')
                [1:-1]]

    header = cells(lines[start])
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith('|'):
            break
        rows.append(dict(zip(header, cells(line))))
    return rows
